"""Faithfulness measures on hand-made images and heatmaps with known answers."""

from __future__ import annotations

import numpy as np

from scandx.tasks.classification.explain.faithfulness import deletion_drops, pointing_hit


def test_pointing_game():
    heat = np.zeros((20, 20))
    heat[5, 12] = 1.0  # maximum at x=12, y=5
    assert pointing_hit(heat, cx=12, cy=6, radius=2)
    assert not pointing_hit(heat, cx=2, cy=2, radius=3)


def test_deletion_prefers_a_map_on_the_finding():
    display = np.full((1, 20, 20), 0.3)
    display[0, 8:12, 8:12] = 1.0  # the "lesion"

    def score(img):  # a model that looks at the lesion's mean brightness
        return float(img[0, 8:12, 8:12].mean())

    good = np.zeros((20, 20))
    good[8:12, 8:12] = 1.0
    drop_top, drop_random = deletion_drops(display, good, score, fraction=0.04)
    assert drop_top > 0.5 and drop_random < drop_top / 3
    bad = np.zeros((20, 20))
    bad[0:2, 0:8] = 1.0  # a map pointing at empty background
    drop_bad, _ = deletion_drops(display, bad, score, fraction=0.04)
    assert drop_bad == 0.0
