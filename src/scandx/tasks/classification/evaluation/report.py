"""Metrics of a set of predictions, with patient-level bootstrap CIs, as metrics.json."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from scandx.core.stats import bootstrap_ci
from scandx.tasks.classification.evaluation.metrics import (
    binary_metrics,
    confusion,
    multiclass_metrics,
    multilabel_metrics,
    roc_auc,
)


def decisions(
    task: str, probs: np.ndarray, thresholds: dict[str, Any], classes: list[str]
) -> np.ndarray:
    if task == "binary":
        return (probs[:, 1] >= thresholds["positive"]).astype(int)
    if task == "multilabel":
        return (probs >= np.array([thresholds[c] for c in classes])[None]).astype(int)
    return probs.argmax(1)


def flat_metrics(
    task: str, classes: list[str], y: np.ndarray, probs: np.ndarray, thresholds: dict[str, Any]
) -> dict[str, float]:
    """Every metric as a flat {name: value}; per-class ones as 'per_class/<class>/<metric>'."""
    out: dict[str, float] = {}
    if task == "binary":
        out.update(binary_metrics(y == 1, probs[:, 1], thresholds["positive"]))
        pred = decisions(task, probs, thresholds, classes)
        for k, name in enumerate(classes):  # each class as the positive one, at the same decisions
            per = {"auc": roc_auc(y == k, probs[:, k]), **_decision_metrics(y == k, pred == k)}
            out.update({f"per_class/{name}/{m}": v for m, v in per.items() if m in _PER_CLASS})
    elif task == "multiclass":
        out.update(multiclass_metrics(y, probs))
        pred = probs.argmax(1)
        for k, name in enumerate(classes):
            per = {"auc": roc_auc(y == k, probs[:, k]), **_decision_metrics(y == k, pred == k)}
            out.update({f"per_class/{name}/{m}": v for m, v in per.items()})
    else:
        t = np.array([thresholds[c] for c in classes])
        out.update(multilabel_metrics(y, probs, t))
        for k, name in enumerate(classes):
            per = binary_metrics(y[:, k], probs[:, k], t[k])
            out.update({f"per_class/{name}/{m}": v for m, v in per.items() if m in _PER_CLASS})
    return out


_PER_CLASS = ("auc", "sensitivity", "specificity", "ppv", "npv", "f1")
HEADLINE = (
    "auc",
    "accuracy",
    "balanced_accuracy",
    "sensitivity",
    "specificity",
    "ppv",
    "npv",
    "f1",
)


def metric_rows(metrics: dict[str, Any]) -> list[str]:
    """'name  value  [lo, hi]' for each headline metric present in a metrics.json dict."""
    rows = []
    for k in HEADLINE:
        m = metrics.get(k)
        if isinstance(m, dict) and m.get("value") is not None:
            lo, hi = m["ci95"]
            ci = f"[{lo:.3f}, {hi:.3f}]" if lo is not None else "[n/a]"
            rows.append(f"{k:<18} {m['value']:>7.3f}   {ci}")
    return rows


def _decision_metrics(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    tp = float(np.sum(truth & pred))
    fp = float(np.sum(~truth & pred))
    fn = float(np.sum(truth & ~pred))
    tn = float(np.sum(~truth & ~pred))
    nan = float("nan")
    return {
        "sensitivity": tp / (tp + fn) if tp + fn else nan,
        "specificity": tn / (tn + fp) if tn + fp else nan,
        "ppv": tp / (tp + fp) if tp + fp else nan,
        "npv": tn / (tn + fn) if tn + fn else nan,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else nan,
    }


def evaluate_predictions(
    task: str,
    classes: list[str],
    y: np.ndarray,
    probs: np.ndarray,
    thresholds: dict[str, Any],
    patients: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """metrics.json content: each metric as {"value", "ci95"}, per class, confusion matrix."""
    point = flat_metrics(task, classes, y, probs, thresholds)
    ci = bootstrap_ci(
        lambda idx: flat_metrics(task, classes, y[idx], probs[idx], thresholds),
        patients,
        n_boot=n_boot,
        seed=seed,
    )
    result: dict[str, Any] = {}
    for key, value in point.items():
        entry = {
            "value": json_number(value),
            "ci95": [json_number(v) for v in ci.get(key, [np.nan, np.nan])],
        }
        parts = key.split("/")
        node = result
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = entry
    pred = decisions(task, probs, thresholds, classes)
    if task == "multilabel":
        result["confusion_matrices"] = {
            c: confusion(y[:, k], pred[:, k], 2).tolist() for k, c in enumerate(classes)
        }
    else:
        result["confusion_matrix"] = {
            "rows": "true class",
            "columns": "predicted class",
            "labels": classes,
            "matrix": confusion(y, pred, len(classes)).tolist(),
        }
    counts = (
        y.sum(0).astype(int).tolist()
        if task == "multilabel"
        else np.bincount(y, minlength=len(classes)).tolist()
    )
    for name, n in zip(classes, counts, strict=True):
        result.setdefault("per_class", {}).setdefault(name, {})["n"] = int(n)
    result["bootstrap"] = {
        "replicates": n_boot,
        "resampling_unit": "patient",
        "seed": seed,
        "interval": "percentile",
    }
    return result


def json_number(v: float | None) -> float | None:
    """A metric value for JSON: rounded to 6 places; None for missing, nan or inf."""
    return None if v is None or not np.isfinite(v) else round(float(v), 6)
