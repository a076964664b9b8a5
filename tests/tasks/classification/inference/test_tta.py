"""Test-time-augmentation uncertainty: an image's spread depends only on the image and
the seed, never on the other files of the same predict call (issue 11)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from scandx.tasks.classification.inference import Predictor
from scandx.tasks.classification.inference.ood import tta_probabilities


def _images(phantoms: Path, n: int) -> list[Path]:
    return [p for p in sorted(phantoms.rglob("*")) if p.suffix in (".png", ".dcm")][:n]


def test_uncertainty_of_an_image_does_not_change_with_the_other_files(quick_run, phantoms):
    p = Predictor.from_run(quick_run)
    files = _images(phantoms, 6)
    alone = p.predict_files([files[3]])[0]
    together = p.predict_files(files)[3]
    reordered = p.predict_files([files[5], files[3], files[0]])[1]
    for row in (together, reordered):
        assert row["file"] == alone["file"]
        assert row["uncertainty"] == alone["uncertainty"]
        assert row["ood_score"] == alone["ood_score"]


def test_tta_views_of_an_image_depend_only_on_the_image_and_the_seed():
    # a model that sees each image alone: the probability is a function of the pixels
    def probs_fn(x: torch.Tensor) -> np.ndarray:
        v = x.flatten(1).mean(1, keepdim=True).sigmoid()
        return torch.cat([1 - v, v], 1).numpy()

    x = torch.randn(5, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    batch = tta_probabilities(probs_fn, x, [0.5], [0.25], n=6, seed=3)
    alone = tta_probabilities(probs_fn, x[2:3], [0.5], [0.25], n=6, seed=3)
    np.testing.assert_array_equal(batch[:, 2], alone[:, 0])
    other_seed = tta_probabilities(probs_fn, x[2:3], [0.5], [0.25], n=6, seed=4)
    assert not np.array_equal(alone, other_seed)
