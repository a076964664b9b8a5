"""Classification metrics as pure numpy functions.

Implemented here (not by calling scikit-learn) so that the tests can check them
against scikit-learn as an independent implementation.
"""

from __future__ import annotations

import numpy as np


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties sharing their average rank."""
    order = np.argsort(x, kind="mergesort")
    _, inverse, counts = np.unique(x[order], return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    group_rank = ends - (counts - 1) / 2.0
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = group_rank[inverse]
    return ranks


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U); nan when only one class is present."""
    y = np.asarray(y).astype(bool)
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = average_ranks(np.asarray(score, dtype=np.float64))
    return float((r[y].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def _one_vs_rest(task: str, y: np.ndarray, probs: np.ndarray) -> list[tuple[np.ndarray, ...]]:
    """(is this class/label, its scores) per AUC the task reports: the positive class
    (binary), each class against the rest (multi-class), each label (multi-label)."""
    if task == "binary":
        return [(y == 1, probs[:, 1])]
    if task == "multiclass":
        return [(y == k, probs[:, k]) for k in range(probs.shape[1])]
    return [(y[:, k].astype(bool), probs[:, k]) for k in range(probs.shape[1])]


def macro_auc(task: str, y: np.ndarray, probs: np.ndarray) -> float:
    """Binary: AUC of the positive class. Multi-class: one-vs-rest macro mean.
    Multi-label: mean over labels. Classes/labels with one outcome only are left out."""
    aucs = [roc_auc(c, p) for c, p in _one_vs_rest(task, y, probs)]
    aucs = [a for a in aucs if not np.isnan(a)]
    return float(np.mean(aucs)) if aucs else float("nan")


def auc_standard_error(auc: float, n_pos: int, n_neg: int) -> float:
    """Hanley & McNeil (1982): the standard error of an AUC from its value and the
    numbers of positive and negative cases (nan where either is 0)."""
    if n_pos < 1 or n_neg < 1 or np.isnan(auc):
        return float("nan")
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)
    return float(np.sqrt(max(var, 0.0) / (n_pos * n_neg)))


def macro_auc_standard_error(task: str, y: np.ndarray, probs: np.ndarray) -> float:
    """The standard error of ``macro_auc`` (the classes' or labels' one-vs-rest errors
    combined as for a mean of independent estimates)."""
    ses = [
        auc_standard_error(roc_auc(c, p), int(c.sum()), int((~c).sum()))
        for c, p in _one_vs_rest(task, y, probs)
    ]
    ses = [e for e in ses if not np.isnan(e)]
    return float(np.sqrt(np.sum(np.square(ses))) / len(ses)) if ses else float("nan")


def youden_threshold(y: np.ndarray, score: np.ndarray) -> float:
    """Threshold maximising sensitivity + specificity - 1 (predict positive if score >= t).

    Placed halfway between the chosen score and the next lower one, so it does
    not sit exactly on a validation case.
    """
    y = np.asarray(y).astype(bool)
    if y.all() or (~y).all():
        return 0.5
    values = np.unique(score)[::-1]  # descending candidate thresholds
    order = np.argsort(-score, kind="mergesort")
    s_sorted, y_sorted = score[order], y[order]
    tp = np.cumsum(y_sorted)
    fp = np.cumsum(~y_sorted)
    last = np.searchsorted(-s_sorted, -values, side="right") - 1  # last index with score >= v
    j = tp[last] / y.sum() - fp[last] / (~y).sum()
    best = int(np.argmax(j))
    if best + 1 < len(values):
        return float((values[best] + values[best + 1]) / 2.0)
    return float(values[best])


def confusion(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """k x k confusion matrix; rows are true classes, columns predictions."""
    m = np.zeros((k, k), dtype=np.int64)
    np.add.at(m, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return m


def _div(a: float, b: float) -> float:
    return float(a) / float(b) if b else float("nan")


def binary_metrics(y: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, float]:
    """Operating-point metrics of a binary classifier at ``threshold``."""
    y = np.asarray(y).astype(bool)
    pred = score >= threshold
    tp = float(np.sum(pred & y))
    tn = float(np.sum(~pred & ~y))
    fp = float(np.sum(pred & ~y))
    fn = float(np.sum(~pred & y))
    sens, spec = _div(tp, tp + fn), _div(tn, tn + fp)
    ppv, npv = _div(tp, tp + fp), _div(tn, tn + fn)
    return {
        "auc": roc_auc(y, score),
        "accuracy": _div(tp + tn, len(y)),
        "balanced_accuracy": (sens + spec) / 2.0,
        "sensitivity": sens,
        "specificity": spec,
        "ppv": ppv,
        "npv": npv,
        "f1": _div(2 * tp, 2 * tp + fp + fn),
    }


def multiclass_metrics(y: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Top-level metrics of a multi-class classifier (argmax decisions)."""
    k = probs.shape[1]
    pred = probs.argmax(1)
    m = confusion(y, pred, k)
    recalls = [_div(m[i, i], m[i].sum()) for i in range(k) if m[i].sum()]
    return {
        "auc": macro_auc("multiclass", y, probs),
        "accuracy": _div(np.trace(m), m.sum()),
        "balanced_accuracy": float(np.mean(recalls)),
    }


def multilabel_metrics(
    y: np.ndarray, probs: np.ndarray, thresholds: np.ndarray
) -> dict[str, float]:
    """Macro means over labels, plus subset (exact-match) accuracy."""
    pred = probs >= thresholds[None, :]
    per = [binary_metrics(y[:, k], probs[:, k], thresholds[k]) for k in range(probs.shape[1])]
    return {
        "auc": macro_auc("multilabel", y, probs),
        "accuracy": float(np.nanmean([p["accuracy"] for p in per])),
        "balanced_accuracy": float(np.nanmean([p["balanced_accuracy"] for p in per])),
        "subset_accuracy": float(np.mean(np.all(pred == y.astype(bool), axis=1))),
    }
