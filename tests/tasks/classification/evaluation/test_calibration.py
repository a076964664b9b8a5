"""Calibration: ECE vs hand-worked and scikit-learn figures; scaling undoes known miscalibration."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.calibration import calibration_curve

from scandx.tasks.classification.evaluation.calibration import (
    apply_calibration,
    expected_calibration_error,
    fit_calibration,
)


def test_ece_hand_worked():
    # P(pos) 0.2, 0.2 (bin 3: mean 0.2, 1 of 2 positive -> |0.2 - 0.5| = 0.3)
    # P(pos) 0.9, 0.9 (bin 13: mean 0.9, 2 of 2 positive -> 0.1); ECE = 0.5*0.3 + 0.5*0.1
    p1 = np.array([0.2, 0.2, 0.9, 0.9])
    y = np.array([0, 1, 1, 1])
    probs = np.stack([1 - p1, p1], 1)
    assert expected_calibration_error("binary", y, probs) == pytest.approx(0.2)


def test_ece_matches_sklearn_calibration_curve():
    rng = np.random.default_rng(0)
    p = rng.random(2000)
    y = (rng.random(2000) < p**2).astype(int)  # over-confident scores
    frac_pos, mean_pred = calibration_curve(y, p, n_bins=15, strategy="uniform")
    counts = np.histogram(p, bins=np.linspace(0, 1, 16))[0]
    counts = counts[counts > 0]
    reference = float(np.sum(counts / len(p) * np.abs(frac_pos - mean_pred)))
    assert expected_calibration_error("binary", y, np.stack([1 - p, p], 1)) == pytest.approx(
        reference
    )


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_temperature_scaling_recovers_a_known_temperature():
    rng = np.random.default_rng(1)
    true_logits = rng.normal(0, 2, (4000, 2))
    y = np.array([rng.choice(2, p=p) for p in _softmax(true_logits)])
    overconfident = true_logits * 3.0
    cal = fit_calibration("binary", overconfident, y)
    assert cal["method"] == "temperature" and cal["temperature"] == pytest.approx(3.0, rel=0.1)
    before = expected_calibration_error("binary", y, _softmax(overconfident))
    after_logits = apply_calibration(torch.tensor(overconfident), cal).numpy()
    assert expected_calibration_error("binary", y, _softmax(after_logits)) < before / 2


def test_vector_scaling_for_multiclass_and_per_label_temperature():
    rng = np.random.default_rng(2)
    z = rng.normal(0, 1.5, (3000, 3))
    y = np.array([rng.choice(3, p=p) for p in _softmax(z)])
    cal = fit_calibration("multiclass", z * 2.5 + np.array([1.0, 0, -1.0]), y)
    assert cal["method"] == "vector_scaling" and len(cal["weight"]) == 3
    np.testing.assert_allclose(cal["weight"], [0.4] * 3, rtol=0.15)
    zl = rng.normal(0, 2, (3000, 2))
    yl = (rng.random((3000, 2)) < 1 / (1 + np.exp(-zl))).astype(int)
    cal_l = fit_calibration("multilabel", zl * np.array([2.0, 0.5]), yl)
    np.testing.assert_allclose(cal_l["temperature"], [2.0, 0.5], rtol=0.15)


def test_no_calibration_is_identity():
    z = torch.randn(5, 2)
    assert torch.equal(apply_calibration(z, None), z)
