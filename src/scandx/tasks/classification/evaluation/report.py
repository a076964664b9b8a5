"""Metrics of a set of predictions, with patient-level bootstrap CIs, as metrics.json.

Small samples (issue 11): a proportion (sensitivity, specificity, PPV, NPV, accuracy)
with few cases behind it, or whose bootstrap interval has zero width, gets the Wilson
score interval instead (``ci_method``, ``count``: successes and cases); an AUC with
fewer than ``MIN_AUC_EACH`` positives or negatives keeps its value but no interval
(``ci_note``); a metric that cannot be measured (no case of a class) is null with the
reason in ``note``; and ``warnings`` lists all of it for the report and the model card.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from scandx.core.stats import bootstrap_ci, needs_exact_interval, wilson_interval
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


MIN_AUC_EACH = 5  # positives and negatives an AUC interval needs (fewer: refused)


def _tally(truth: np.ndarray, pred: np.ndarray) -> dict[str, tuple[int, int]]:
    """(successes, cases) behind each proportion of a one-vs-rest decision."""
    tp, fp = int(np.sum(truth & pred)), int(np.sum(~truth & pred))
    fn, tn = int(np.sum(truth & ~pred)), int(np.sum(~truth & ~pred))
    return {
        "sensitivity": (tp, tp + fn),
        "specificity": (tn, tn + fp),
        "ppv": (tp, tp + fp),
        "npv": (tn, tn + fn),
        "accuracy": (tp + tn, len(truth)),
    }


def proportion_counts(
    task: str, classes: list[str], y: np.ndarray, probs: np.ndarray, thresholds: dict[str, Any]
) -> tuple[dict[str, tuple[int, int]], dict[str, tuple[int, int]]]:
    """({metric key: (successes, cases)} of the proportions, {auc key: (positives,
    negatives)}), keyed as ``flat_metrics`` keys them."""
    pred = decisions(task, probs, thresholds, classes)
    props: dict[str, tuple[int, int]] = {}
    aucs: dict[str, tuple[int, int]] = {}
    for k, name in enumerate(classes):
        truth = (y[:, k] if task == "multilabel" else y == k).astype(bool)
        decided = (pred[:, k] if task == "multilabel" else pred == k).astype(bool)
        for m, c in _tally(truth, decided).items():
            if m != "accuracy":
                props[f"per_class/{name}/{m}"] = c
        aucs[f"per_class/{name}/auc"] = (int(truth.sum()), int((~truth).sum()))
    if task == "binary":
        truth = y == 1
        props.update(_tally(truth, pred == 1))
        aucs["auc"] = (int(truth.sum()), int((~truth).sum()))
    else:
        if task == "multiclass":
            props["accuracy"] = (int(np.sum(pred == y)), len(y))
        aucs["auc"] = (min(c[0] for c in aucs.values()), min(c[1] for c in aucs.values()))
    return props, aucs


def small_sample_interval(
    entry: dict[str, Any], key: str, props: dict, aucs: dict, notes: dict[str, str]
) -> None:
    """Replace or refuse ``entry``'s interval where the counts do not support it."""
    if key in props and entry["value"] is not None:
        k, n = props[key]
        if needs_exact_interval(k, n, entry["ci95"]):
            entry["ci95"] = [json_number(v) for v in wilson_interval(k, n)]
            entry["ci_method"] = "wilson"
            entry["count"] = [k, n]
            notes.setdefault("wilson", key)
    elif key in aucs and entry["value"] is not None:
        pos, neg = aucs[key]
        if min(pos, neg) < MIN_AUC_EACH:
            entry["ci95"] = [None, None]
            entry["ci_note"] = (
                f"no interval: {pos} positive and {neg} negative cases (an AUC interval "
                f"needs >= {MIN_AUC_EACH} of each)"
            )
            notes.setdefault("auc", f"{key}: {entry['ci_note']}")
    elif entry["value"] is not None and entry["ci95"][0] is not None:
        if entry["ci95"][0] == entry["ci95"][1]:
            entry["ci_note"] = "the bootstrap interval has zero width: too few cases to vary"
            notes.setdefault("degenerate", key)
    if entry["value"] is None:
        if key in props and props[key][1] == 0:
            entry["note"] = "not measurable: no case in its denominator in this split"
        elif key in aucs and min(aucs[key]) == 0:
            entry["note"] = "not measurable: this split lacks positive or negative cases"


def sample_warnings(
    task: str, classes: list[str], y: np.ndarray, notes: dict[str, str]
) -> list[str]:
    """The report's warnings about what this split's size and make-up do not support."""
    out = []
    counts = (
        {c: (int(y[:, k].sum()), int(len(y) - y[:, k].sum())) for k, c in enumerate(classes)}
        if task == "multilabel"
        else {c: (int(np.sum(y == k)), int(np.sum(y != k))) for k, c in enumerate(classes)}
    )
    for name, (pos, neg) in counts.items():
        if pos == 0 or (task == "multilabel" and neg == 0):
            which = "no cases of" if pos == 0 else "only cases of"
            out.append(
                f"This split has {which} {name!r}: its AUC, sensitivity and related metrics "
                "cannot be measured and are left out (not 1.000); accuracy describes the "
                "cases present only."
            )
    if "wilson" in notes:
        out.append(
            "Some proportions rest on few cases: their 95% intervals are Wilson score "
            "intervals (marked), not bootstrap percentiles, which collapse to zero width."
        )
    if "auc" in notes:
        out.append(f"AUC interval refused: {notes['auc']}.")
    if "degenerate" in notes:
        out.append("Some bootstrap intervals have zero width (marked): too few cases to vary.")
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
    props, aucs = proportion_counts(task, classes, y, probs, thresholds)
    notes: dict[str, str] = {}
    result: dict[str, Any] = {}
    for key, value in point.items():
        entry = {
            "value": json_number(value),
            "ci95": [json_number(v) for v in ci.get(key, [np.nan, np.nan])],
        }
        small_sample_interval(entry, key, props, aucs, notes)
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
        "interval": "percentile; Wilson score where marked (ci_method)",
    }
    result["warnings"] = sample_warnings(task, classes, y, notes)
    return result


def collect_warnings(metrics: dict[str, Any]) -> list[str]:
    """metrics.json's warnings with those of calibration and the operating points."""
    out = list(metrics.get("warnings") or [])
    cal_note = (metrics.get("calibration") or {}).get("note")
    if cal_note:
        out.append(f"Calibration: {cal_note}.")
    for target, rows in (metrics.get("operating_points") or {}).items():
        for row in rows if isinstance(rows, list) else []:
            # refused rules, or three or more rules at one threshold: validation too small
            if row.get("note") and ("refused" in row or len(row.get("same_as", [])) > 1):
                out.append(f"Operating points for {target}: {row['note']}")
    return list(dict.fromkeys(out))


def json_number(v: float | None) -> float | None:
    """A metric value for JSON: rounded to 6 places; None for missing, nan or inf."""
    return None if v is None or not np.isfinite(v) else round(float(v), 6)
