"""Post-processing chosen on validation: threshold and largest component, hand-worked."""

from __future__ import annotations

import numpy as np
import pytest

from scandx.tasks.segmentation.postprocess import (
    apply_postprocessing,
    choose_components,
    choose_threshold,
    label_map,
)


def test_the_threshold_with_the_best_validation_dice_is_chosen():
    rng = np.random.default_rng(0)
    p = rng.random((50, 50))
    truth = (p >= 0.35).astype(np.int64)  # the model is under-confident: 0.35 separates
    t = choose_threshold([p], [truth], [None])
    assert t["value"] == pytest.approx(0.35) and t["val_dice"] == 1.0
    assert t["val_dice_at_0.5"] < 1.0
    # a perfectly separating 0.5 is kept, ties included
    t = choose_threshold([p], [(p >= 0.5).astype(np.int64)], [None])
    assert t["value"] == 0.5
    # outside the field of view nothing counts
    fov = np.zeros_like(truth, bool)
    fov[:25] = True
    noisy = truth.copy()
    noisy[25:] = 1 - noisy[25:]
    assert choose_threshold([p], [noisy], [fov])["value"] == pytest.approx(0.35)
    probs = np.stack([1 - p, p])
    assert np.array_equal(label_map(probs, {}, {"value": 0.35}), truth)
    assert np.array_equal(label_map(probs, {}, None), probs.argmax(0))


def test_largest_component_is_kept_only_where_it_helps():
    lab = np.zeros((20, 20), np.int64)
    lab[2:8, 2:8] = 1
    pred = lab.copy()
    pred[15:17, 15:17] = 1  # a false island: removing it helps class 1
    rules = choose_components([pred], [lab], [None], 2)
    assert rules["1"]["keep_largest_component"]
    assert rules["1"]["val_dice_after"] == 1.0 > rules["1"]["val_dice_before"]
    assert np.array_equal(apply_postprocessing(pred, rules), lab)
    two = lab.copy()
    two[12:18, 12:18] = 1  # two true objects: keeping one would hurt
    assert not choose_components([two], [two], [None], 2)["1"]["keep_largest_component"]
