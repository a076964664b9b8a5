"""Curves, operating points and reliability bins, against scikit-learn and hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, precision_recall_curve
from sklearn.metrics import roc_curve as sk_roc_curve

from scandx.tasks.classification.evaluation.calibration import expected_calibration_error
from scandx.tasks.classification.evaluation.curves import (
    average_precision,
    curve_with_bands,
    operating_point_table,
    pr_curve,
    precision_at,
    reliability_bins,
    roc_curve,
    threshold_for_sensitivity,
    threshold_for_specificity,
    tpr_at,
)


def _data(seed: int, n: int = 300, ties: bool = True):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.35
    s = rng.normal(0, 1, n) + 1.2 * y
    if ties:
        s = np.round(s, 1)  # many tied scores
    return y, s


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_and_pr_match_sklearn(seed):
    y, s = _data(seed)
    fpr, tpr, thr = roc_curve(y, s)
    sk_fpr, sk_tpr, sk_thr = sk_roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_allclose(thr[1:], sk_thr[1:])
    recall, precision = pr_curve(y, s)
    sk_p, sk_r, _ = precision_recall_curve(y, s)
    # scikit-learn lists thresholds ascending and ends with (precision 1, recall 0)
    np.testing.assert_allclose(recall, sk_r[::-1])
    np.testing.assert_allclose(precision, sk_p[::-1])
    assert average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_grid_interpolation_hand_worked():
    # ROC points (0,0) (0,.5) (.5,.5) (.5,1) (1,1)
    fpr = np.array([0, 0, 0.5, 0.5, 1.0])
    tpr = np.array([0, 0.5, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(tpr_at(fpr, tpr, np.array([0, 0.25, 0.5, 0.9])), [0.5, 0.5, 1, 1])
    recall = np.array([0, 0.5, 0.5, 1.0])
    precision = np.array([1.0, 1.0, 0.5, 0.6])
    got = precision_at(recall, precision, np.array([0, 0.5, 0.75, 1.0]))
    np.testing.assert_allclose(got, [1.0, 1.0, 0.6, 0.6])


@pytest.mark.parametrize("seed", [0, 3])
def test_operating_thresholds_are_the_tightest_that_meet_the_target(seed):
    y, s = _data(seed, ties=False)
    for target in (0.9, 0.95):
        t = threshold_for_sensitivity(y, s, target)
        assert np.mean(s[y] >= t) >= target
        higher = np.sort(s[y & (s >= t)])  # the next threshold up loses one positive
        assert np.mean(s[y] >= np.nextafter(higher[0], np.inf)) < target
        t = threshold_for_specificity(y, s, target)
        assert np.mean(s[~y] < t) >= target
        lower = np.sort(s[~y & (s < t)])  # one step down gains a false positive
        assert np.mean(s[~y] < lower[-1]) < target


def test_operating_thresholds_hand_worked():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.5, 0.7, 0.9])
    # sensitivity >= 90% of 4 positives needs all 4: threshold between 0.4 and the 0.3 below
    assert threshold_for_sensitivity(y, s, 0.9) == pytest.approx(0.35)
    # specificity >= 90% of 4 negatives needs all 4 below: between 0.6 and the 0.7 above
    assert threshold_for_specificity(y, s, 0.9) == pytest.approx(0.65)
    rows = operating_point_table(
        y, s, [f"p{i}" for i in range(8)], {"a": 0.35, "b": 0.65}, n_boot=50
    )
    assert rows[0]["sensitivity"]["value"] == 1.0
    assert rows[0]["specificity"]["value"] == 0.75
    assert rows[1]["sensitivity"]["value"] == 0.5
    assert rows[1]["specificity"]["value"] == 1.0
    for r in rows:
        lo, hi = r["sensitivity"]["ci95"]
        assert lo <= r["sensitivity"]["value"] <= hi


def test_bands_enclose_the_curve():
    y, s = _data(5, n=400)
    c = curve_with_bands(y, s, [f"p{i // 2}" for i in range(400)], n_boot=200)
    point = tpr_at(np.array(c["roc"]["fpr"]), np.array(c["roc"]["tpr"]))
    lo, hi = (np.array(b, dtype=float) for b in c["roc"]["band"])
    assert np.all(lo <= hi + 1e-12)
    assert np.mean((lo - 1e-9 <= point) & (point <= hi + 1e-9)) > 0.9
    assert 0 < hi.mean() - lo.mean() < 0.3
    plo, phi = (np.array(b, dtype=float) for b in c["pr"]["band"])
    assert np.all(plo <= phi + 1e-12)


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_reliability_bins_reproduce_ece(task):
    rng = np.random.default_rng(0)
    n = 500
    if task == "binary":
        p1 = rng.random(n)
        probs = np.stack([1 - p1, p1], 1)
        y = (rng.random(n) < p1**1.5).astype(int)
    elif task == "multiclass":
        probs = rng.dirichlet([1, 1, 1], n)
        y = np.array([rng.choice(3, p=p) for p in probs])
    else:
        probs = rng.random((n, 3))
        y = (rng.random((n, 3)) < probs).astype(int)
    bins = reliability_bins(task, y, probs)
    total = sum(b["n"] for b in bins)
    ece = sum(b["n"] / total * abs(b["confidence"] - b["observed"]) for b in bins)
    if task != "multilabel":  # multi-label ECE is the mean over labels, the diagram pools them
        assert ece == pytest.approx(expected_calibration_error(task, y, probs), abs=1e-12)
    assert total == probs.size if task == "multilabel" else total == n
