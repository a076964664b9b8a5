"""The analyses beyond headline metrics that ``evaluate`` adds for the report:
curves with bands, operating points, reliability bins (subgroups: subgroups.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from scandx.tasks.classification.evaluation.curves import (
    curve_with_bands,
    operating_point_table,
    reliability_bins,
)
from scandx.tasks.classification.evaluation.metrics import roc_auc

MAX_CURVE_POINTS = 400


def targets(
    task: str, classes: list[str], y: np.ndarray, probs: np.ndarray
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """One-vs-rest (truth, score) pairs: the positive class of a binary task, every class
    of a multi-class task, every label of a multi-label task."""
    if task == "binary":
        return {classes[1]: (y == 1, probs[:, 1])}
    if task == "multiclass":
        return {c: (y == k, probs[:, k]) for k, c in enumerate(classes)}
    return {c: (y[:, k].astype(bool), probs[:, k]) for k, c in enumerate(classes)}


def thin(curve: dict[str, list], keys: tuple[str, str], n: int = MAX_CURVE_POINTS) -> None:
    """Keep at most n points of a curve (evenly spaced, ends kept) for storage and drawing."""
    length = len(curve[keys[0]])
    if length > n:
        idx = np.unique(np.linspace(0, length - 1, n).round().astype(int))
        for k in keys:
            curve[k] = [curve[k][i] for i in idx]


def curves_for(
    task: str,
    classes: list[str],
    y: np.ndarray,
    probs: np.ndarray,
    patients: Sequence[str],
    n_boot: int,
) -> dict[str, dict[str, Any]]:
    out = {}
    for name, (truth, score) in targets(task, classes, y, probs).items():
        if truth.all() or not truth.any():
            continue  # a curve needs both outcomes
        c = curve_with_bands(truth, score, patients, n_boot=n_boot)
        c["auc"] = roc_auc(truth, score)
        thin(c["roc"], ("fpr", "tpr"))
        thin(c["pr"], ("recall", "precision"))
        out[name] = c
    return out


def operating_points_for(
    task: str,
    classes: list[str],
    y: np.ndarray,
    probs: np.ndarray,
    patients: Sequence[str],
    chosen: dict[str, dict[str, float]] | None,
    n_boot: int,
) -> dict[str, list[dict[str, Any]]]:
    """Test-split sensitivity/specificity at each threshold chosen on validation."""
    if not chosen:
        return {}
    pairs = targets(task, classes, y, probs)
    return {
        name: operating_point_table(*pairs[name], patients, thresholds, n_boot=n_boot)
        for name, thresholds in chosen.items()
        if name in pairs
    }


def reliability_for(
    task: str, y: np.ndarray, raw_probs: np.ndarray, probs: np.ndarray
) -> dict[str, list[dict[str, float]]]:
    return {
        "before": reliability_bins(task, y, raw_probs),
        "after": reliability_bins(task, y, probs),
    }
