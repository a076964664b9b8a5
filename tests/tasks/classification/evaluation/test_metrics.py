"""Metrics against scikit-learn (an independent implementation) and hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from scandx.core.stats import bootstrap_ci
from scandx.tasks.classification.evaluation.metrics import (
    auc_standard_error,
    binary_metrics,
    macro_auc,
    macro_auc_standard_error,
    multiclass_metrics,
    roc_auc,
    youden_threshold,
)
from scandx.tasks.classification.evaluation.report import evaluate_predictions
from tests.conftest import REQUIRED_BINARY_METRICS


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.random(300) + 0.3 * y, 1)  # rounding makes many ties
    assert roc_auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)


@pytest.mark.parametrize(("shift", "n_pos", "n_neg"), [(1.0, 60, 140), (3.0, 389, 135)])
def test_auc_standard_error_agrees_with_a_bootstrap(shift, n_pos, n_neg):
    """Hanley & McNeil's formula against the spread of scikit-learn's AUC over 2,000
    bootstrap resamples of a binormal sample (the validation tie tolerance rests on it)."""
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(n_pos), np.zeros(n_neg)].astype(int)
    s = rng.normal(size=n_pos + n_neg) + shift * y
    boot = []
    for _ in range(2000):
        i = np.r_[rng.choice(n_pos, n_pos), n_pos + rng.choice(n_neg, n_neg)]
        boot.append(skm.roc_auc_score(y[i], s[i]))
    se = auc_standard_error(skm.roc_auc_score(y, s), n_pos, n_neg)
    assert se == pytest.approx(np.std(boot), rel=0.15)
    probs = np.c_[1 - s, s]
    assert macro_auc_standard_error("binary", y, probs) == pytest.approx(se)
    assert np.isnan(auc_standard_error(0.9, 0, 10))


def test_macro_auc_standard_error_of_a_multiclass_task():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 300)
    probs = rng.dirichlet(np.ones(3), 300) + np.eye(3)[y]
    probs /= probs.sum(1, keepdims=True)
    per_class = [
        auc_standard_error(skm.roc_auc_score(y == k, probs[:, k]), (y == k).sum(), (y != k).sum())
        for k in range(3)
    ]
    expected = np.sqrt(np.sum(np.square(per_class))) / 3
    assert macro_auc_standard_error("multiclass", y, probs) == pytest.approx(expected)


def test_binary_operating_point_matches_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    s = rng.random(500) * 0.7 + 0.3 * y
    t = 0.5
    pred = (s >= t).astype(int)
    m = binary_metrics(y, s, t)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred).ravel()
    assert m["sensitivity"] == pytest.approx(skm.recall_score(y, pred))
    assert m["specificity"] == pytest.approx(tn / (tn + fp))
    assert m["ppv"] == pytest.approx(skm.precision_score(y, pred))
    assert m["npv"] == pytest.approx(tn / (tn + fn))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))


def test_multiclass_matches_sklearn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 400)
    logits = rng.normal(size=(400, 4))
    logits[np.arange(400), y] += 1.0
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    m = multiclass_metrics(y, p)
    assert m["auc"] == pytest.approx(skm.roc_auc_score(y, p, multi_class="ovr", average="macro"))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, p.argmax(1)))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, p.argmax(1)))


def test_multilabel_macro_auc_matches_sklearn():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, (300, 5))
    p = np.clip(rng.random((300, 5)) * 0.8 + 0.2 * y, 0, 1)
    assert macro_auc("multilabel", y, p) == pytest.approx(skm.roc_auc_score(y, p, average="macro"))


def test_youden_threshold_hand_worked():
    # scores of negatives 0.1 0.2 0.3, positives 0.35 0.8 0.9: any t in (0.3, 0.35] separates them
    y = np.array([0, 0, 0, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.35, 0.8, 0.9])
    t = youden_threshold(y, s)
    assert 0.3 < t <= 0.35 and t == pytest.approx(0.325)


def test_youden_matches_sklearn_roc_curve():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    s = rng.random(400) + 0.4 * y
    fpr, tpr, thr = skm.roc_curve(y, s)
    best_j = np.max(tpr - fpr)
    m = binary_metrics(y, s, youden_threshold(y, s))
    assert m["sensitivity"] + m["specificity"] - 1 == pytest.approx(best_j)


def test_bootstrap_ci_covers_point_and_clusters_by_patient():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 200)
    s = rng.random(200) + 0.5 * y
    stat = lambda idx: {"auc": roc_auc(y[idx], s[idx])}  # noqa: E731
    ci = bootstrap_ci(stat, [f"p{i}" for i in range(200)], n_boot=300)
    point = roc_auc(y, s)
    assert ci["auc"][0] < point < ci["auc"][1]
    # 20 patients with 10 identical images each carry the information of 20 cases, not 200:
    # resampling patients must give a much wider interval than resampling images.
    y20, s20 = np.repeat(y[:20], 10), np.repeat(s[:20], 10)
    stat20 = lambda idx: {"auc": roc_auc(y20[idx], s20[idx])}  # noqa: E731
    by_image = bootstrap_ci(stat20, [f"i{i}" for i in range(200)], n_boot=300)["auc"]
    by_patient = bootstrap_ci(stat20, [f"p{i // 10}" for i in range(200)], n_boot=300)["auc"]
    assert by_patient[1] - by_patient[0] > 2 * (by_image[1] - by_image[0])


def test_evaluate_predictions_shape():
    y = np.array([0, 0, 1, 1, 1, 0, 1, 0])
    p1 = np.array([0.1, 0.4, 0.35, 0.8, 0.7, 0.2, 0.9, 0.6])
    probs = np.stack([1 - p1, p1], 1)
    out = evaluate_predictions(
        "binary", ["neg", "pos"], y, probs, {"positive": 0.5}, [str(i) for i in range(8)], n_boot=50
    )
    for key in REQUIRED_BINARY_METRICS:  # 8 cases: Wilson intervals, no AUC interval
        assert {"value", "ci95"} <= set(out[key])
    assert out["sensitivity"]["value"] == pytest.approx(3 / 4)  # 0.8, 0.7, 0.9 >= 0.5; 0.35 missed
    assert out["specificity"]["value"] == pytest.approx(3 / 4)  # 0.6 is a false positive
    assert out["confusion_matrix"]["matrix"] == [[3, 1], [1, 3]]
    assert out["per_class"]["pos"]["n"] == 4
