"""ROC and precision-recall curves with bootstrap bands, operating points, reliability bins.

Pure numpy (the tests compare with scikit-learn). Scores are "predict positive if
score >= threshold", as everywhere in scandx.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from scandx.core.stats import bootstrap_ci
from scandx.tasks.classification.evaluation.metrics import binary_metrics
from scandx.tasks.classification.evaluation.report import json_number, small_sample_interval

GRID = np.linspace(0.0, 1.0, 101)


def _counts(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct thresholds (descending) with true and false positives at each."""
    y = np.asarray(y).astype(bool)
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="mergesort")
    s, yy = score[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each distinct score
    return s[last], np.cumsum(yy)[last].astype(float), np.cumsum(~yy)[last].astype(float)


def roc_curve(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), starting at (0, 0) with threshold +inf."""
    thr, tp, fp = _counts(y, score)
    n1, n0 = tp[-1], fp[-1]
    fpr = np.r_[0.0, fp / n0] if n0 else np.full(len(thr) + 1, np.nan)
    tpr = np.r_[0.0, tp / n1] if n1 else np.full(len(thr) + 1, np.nan)
    return fpr, tpr, np.r_[np.inf, thr]


def pr_curve(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision), from the highest threshold down, as scikit-learn orders it
    reversed; the point (recall 0, precision 1) is prepended."""
    _, tp, fp = _counts(y, score)
    n1 = tp[-1]
    recall = tp / n1 if n1 else np.full(len(tp), np.nan)
    precision = tp / (tp + fp)
    return np.r_[0.0, recall], np.r_[1.0, precision]


def average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """Sum over thresholds of (recall step) x precision, as scikit-learn defines AP."""
    recall, precision = pr_curve(y, score)
    if np.isnan(recall).any():
        return float("nan")
    return float(np.sum(np.diff(recall) * precision[1:]))


def tpr_at(fpr: np.ndarray, tpr: np.ndarray, grid: np.ndarray = GRID) -> np.ndarray:
    """Best sensitivity reachable with false-positive rate <= each grid value."""
    idx = np.searchsorted(fpr, grid, side="right") - 1
    return tpr[np.clip(idx, 0, len(tpr) - 1)]


def precision_at(recall: np.ndarray, precision: np.ndarray, grid: np.ndarray = GRID) -> np.ndarray:
    """Interpolated precision: the best precision at recall >= each grid value."""
    best_after = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, grid, side="left")
    out = np.zeros(len(grid))
    ok = idx < len(recall)
    out[ok] = best_after[idx[ok]]
    return out


def curve_with_bands(
    y: np.ndarray,
    score: np.ndarray,
    patients: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """ROC and PR curves of one target with patient-bootstrap 95% bands on GRID."""
    y = np.asarray(y).astype(bool)
    fpr, tpr, _ = roc_curve(y, score)
    recall, precision = pr_curve(y, score)

    def stat(idx: np.ndarray) -> dict[str, float]:
        yy, ss = y[idx], score[idx]
        if yy.all() or not yy.any():
            return {}
        f, t, _ = roc_curve(yy, ss)
        r, p = pr_curve(yy, ss)
        out = {f"roc{i}": v for i, v in enumerate(tpr_at(f, t))}
        out.update({f"pr{i}": v for i, v in enumerate(precision_at(r, p))})
        return out

    ci = bootstrap_ci(stat, patients, n_boot=n_boot, seed=seed)
    n = len(GRID)

    def band(prefix: str) -> list[list[float]]:
        lo = [ci.get(f"{prefix}{i}", [np.nan, np.nan])[0] for i in range(n)]
        hi = [ci.get(f"{prefix}{i}", [np.nan, np.nan])[1] for i in range(n)]
        return [_rounded(lo), _rounded(hi)]

    return {
        "grid": _rounded(GRID),
        "roc": {"fpr": _rounded(fpr), "tpr": _rounded(tpr), "band": band("roc")},
        "pr": {
            "recall": _rounded(recall),
            "precision": _rounded(precision),
            "band": band("pr"),
            "average_precision": average_precision(y, score),
            "prevalence": float(y.mean()),
        },
    }


def threshold_for_sensitivity(y: np.ndarray, score: np.ndarray, target: float) -> float:
    """Highest threshold whose sensitivity on (y, score) is at least ``target``.

    Placed halfway to the next lower score so that it does not sit on a case.
    """
    y = np.asarray(y).astype(bool)
    pos = np.sort(score[y])[::-1]
    if len(pos) == 0:
        return 0.5
    k = max(1, math.ceil(target * len(pos) - 1e-9))
    t = pos[k - 1]
    lower = score[score < t]
    return float((t + lower.max()) / 2.0) if len(lower) else float(t)


def threshold_for_specificity(y: np.ndarray, score: np.ndarray, target: float) -> float:
    """Lowest threshold whose specificity on (y, score) is at least ``target``."""
    y = np.asarray(y).astype(bool)
    neg = np.sort(score[~y])
    if len(neg) == 0:
        return 0.5
    k = max(1, math.ceil(target * len(neg) - 1e-9))
    v = neg[k - 1]
    higher = score[score > v]
    return float((v + higher.min()) / 2.0) if len(higher) else float(np.nextafter(v, np.inf))


OPERATING_RULES = {
    "sensitivity_90": "sensitivity >= 90% on val",
    "sensitivity_95": "sensitivity >= 95% on val",
    "specificity_90": "specificity >= 90% on val",
    "specificity_95": "specificity >= 95% on val",
    "youden": "max sensitivity + specificity - 1 on val",
}


RULE_TARGETS = {  # rule: (which cases it counts, the target rate)
    "sensitivity_90": ("positive", 0.90),
    "sensitivity_95": ("positive", 0.95),
    "specificity_90": ("negative", 0.90),
    "specificity_95": ("negative", 0.95),
}


def cases_needed(target: float) -> int:
    """Cases a rate target needs before it differs from 100%: with n cases the rates
    are k/n, so "at least 90%" means "all of them" until n >= 10 (95%: 20)."""
    return math.ceil(1 / (1 - target) - 1e-9)


def choose_operating_points(y: np.ndarray, score: np.ndarray, youden: float) -> dict[str, Any]:
    """Thresholds for each rule of OPERATING_RULES, from validation data.

    A sensitivity (specificity) target is refused when validation has too few positive
    (negative) cases to resolve it (``cases_needed``); ``notes`` says which and why."""
    y = np.asarray(y).astype(bool)
    counts = {"positive": int(y.sum()), "negative": int((~y).sum())}
    finders = {"positive": threshold_for_sensitivity, "negative": threshold_for_specificity}
    chosen: dict[str, Any] = {}
    notes = []
    for rule, (kind, target) in RULE_TARGETS.items():
        need = cases_needed(target)
        if counts[kind] < need:
            notes.append(
                f"{rule} not chosen: validation had {counts[kind]} {kind} case(s); a "
                f"{target:.0%} target needs >= {need} to differ from 100%"
            )
            continue
        chosen[rule] = finders[kind](y, score, target)
    chosen["youden"] = float(youden)
    if notes:
        chosen["notes"] = notes
    return chosen


def operating_point_table(
    y: np.ndarray,
    score: np.ndarray,
    patients: Sequence[str],
    thresholds: dict[str, Any],
    n_boot: int = 1000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Sensitivity, specificity, PPV, NPV with patient-bootstrap CIs at each threshold
    (Wilson score intervals where the counts are small). Rules that gave the same
    threshold on validation are one row (``same_as``, ``note``); rules refused at
    training time are rows with ``refused``."""
    y = np.asarray(y).astype(bool)
    names = ("sensitivity", "specificity", "ppv", "npv")
    distinct: dict[float, list[str]] = {}
    for rule, t in thresholds.items():
        if rule != "notes" and isinstance(t, int | float):
            distinct.setdefault(round(float(t), 9), []).append(rule)

    def stat(idx: np.ndarray) -> dict[str, float]:
        out = {}
        for t, rules in distinct.items():
            m = binary_metrics(y[idx], score[idx], t)
            out.update({f"{rules[0]}/{n}": m[n] for n in names})
        return out

    ci = bootstrap_ci(stat, patients, n_boot=n_boot, seed=seed)
    rows = []
    for t, rules in distinct.items():
        rule = rules[0]
        point = binary_metrics(y, score, t)
        pred = score >= t
        tp, fp = int(np.sum(y & pred)), int(np.sum(~y & pred))
        fn, tn = int(np.sum(y & ~pred)), int(np.sum(~y & ~pred))
        props = {
            "sensitivity": (tp, tp + fn),
            "specificity": (tn, tn + fp),
            "ppv": (tp, tp + fp),
            "npv": (tn, tn + fn),
        }
        row: dict[str, Any] = {"rule": rule, "chosen_by": OPERATING_RULES.get(rule, rule)}
        row["threshold"] = round(float(t), 6)
        for n in names:
            lo, hi = ci.get(f"{rule}/{n}", [np.nan, np.nan])
            entry = {"value": json_number(point[n]), "ci95": [json_number(lo), json_number(hi)]}
            small_sample_interval(entry, n, props, {}, {})
            row[n] = entry
        if len(rules) > 1:
            row["same_as"] = rules[1:]
            row["chosen_by"] = "; ".join(OPERATING_RULES.get(r, r) for r in rules)
            row["note"] = (
                f"{', '.join(rules)} gave one threshold ({t:.4f}) on validation: reported once"
                + ("; too few validation cases to tell the rules apart" if len(rules) > 2 else "")
            )
        rows.append(row)
    for note in thresholds.get("notes") or []:
        rule = note.split(" ", 1)[0]
        rows.append(
            {
                "rule": rule,
                "chosen_by": OPERATING_RULES.get(rule, rule),
                "refused": note,
                "note": note,
            }
        )
    return rows


def reliability_bins(
    task: str, y: np.ndarray, probs: np.ndarray, n_bins: int = 15
) -> list[dict[str, float]]:
    """Equal-width bins of predicted probability with the observed frequency in each,
    on the same quantities as ``expected_calibration_error`` (multi-label: all labels pooled)."""
    if task == "binary":
        conf, outcome = probs[:, 1], (y == 1).astype(float)
    elif task == "multiclass":
        conf, outcome = probs.max(1), (probs.argmax(1) == y).astype(float)
    else:
        conf, outcome = probs.ravel(), y.astype(float).ravel()
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    out = []
    for b in range(n_bins):
        m = bins == b
        if m.any():
            out.append(
                {
                    "lo": b / n_bins,
                    "hi": (b + 1) / n_bins,
                    "n": int(m.sum()),
                    "confidence": float(conf[m].mean()),
                    "observed": float(outcome[m].mean()),
                }
            )
    return out


def _rounded(a: Any) -> list[float | None]:
    return [json_number(float(v)) for v in np.asarray(a, dtype=float)]
