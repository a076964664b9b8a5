"""Segmentation metrics per case and class, with case-bootstrap summaries.

Dice (F1), HD95 and normalised surface distance (NSD) are spacing-aware (MONAI's
surface-distance functions with the case's voxel spacing); pixel AUC for binary
tasks. With a field-of-view mask, every metric is computed inside it (DRIVE's rule).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from scandx.core.stats import bootstrap_ci
from scandx.tasks.classification.evaluation.metrics import roc_auc
from scandx.tasks.classification.evaluation.report import json_number

NSD_TOLERANCE_MM = 1.0


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """2|P & T| / (|P| + |T|); 1.0 when both are empty."""
    p, t = pred.astype(bool), truth.astype(bool)
    denom = p.sum() + t.sum()
    return 1.0 if denom == 0 else float(2 * (p & t).sum() / denom)


def _surface(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float]) -> tuple[float, float]:
    """(HD95, NSD) of two boolean masks; nan when either is empty."""
    from monai.metrics import compute_hausdorff_distance, compute_surface_dice

    if not pred.any() or not truth.any():
        return float("nan"), float("nan")
    p = torch.from_numpy(pred[None, None].astype(np.float32))
    t = torch.from_numpy(truth[None, None].astype(np.float32))
    p2 = torch.cat([1 - p, p], 1)
    t2 = torch.cat([1 - t, t], 1)
    sp = [float(s) for s in spacing]
    with warnings.catch_warnings():  # MONAI 1.6 deprecation notice inside its own code
        warnings.simplefilter("ignore", FutureWarning)
        hd = compute_hausdorff_distance(p2, t2, include_background=False, percentile=95, spacing=sp)
        nsd = compute_surface_dice(
            p2, t2, class_thresholds=[NSD_TOLERANCE_MM], include_background=False, spacing=sp
        )
    return float(hd[0, 0]), float(nsd[0, 0])


def case_metrics(
    pred: np.ndarray,
    truth: np.ndarray,
    labels: dict[int, str],
    spacing: Sequence[float],
    probs: np.ndarray | None = None,
    fov: np.ndarray | None = None,
    regions: dict[str, list[int]] | None = None,
) -> dict[str, dict[str, float]]:
    """{class name: {dice, hd95, nsd[, auc]}} for every foreground class of one case, and
    for every region (a union of labels, such as BraTS's whole tumour)."""
    inside = np.ones(truth.shape, bool) if fov is None else fov.astype(bool)
    out = {}
    targets = [(name, [value]) for value, name in labels.items() if value != 0]
    targets += list((regions or {}).items())
    for name, values in targets:
        p, t = np.isin(pred, values) & inside, np.isin(truth, values) & inside
        value = values[0]
        hd95, nsd = _surface(p, t, spacing)
        entry = {"dice": dice(p, t), "hd95": hd95, "nsd": nsd}
        if probs is not None and len(labels) == 2 and len(values) == 1:
            entry["auc"] = roc_auc(t[inside], probs[value][inside])
        out[name] = entry
    return out


def summarize(
    per_case: list[dict[str, dict[str, float]]],
    case_ids: Sequence[str],
    patients: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
    regions: Sequence[str] = (),
) -> dict[str, Any]:
    """Means over cases (per class and region, and the top level over foreground classes,
    regions excluded) with patient-bootstrap CIs."""
    classes = list(per_case[0])
    names = list(per_case[0][classes[0]])

    def table(idx: np.ndarray) -> dict[str, float]:
        out = {}
        for m in names:
            per_class = []
            for c in classes:
                v = np.array([per_case[i][c][m] for i in idx], dtype=float)
                mean = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
                out[f"{c}/{m}"] = mean
                if c not in regions:
                    per_class.append(mean)
            pc = np.array(per_class)
            out[m] = float(np.nanmean(pc)) if np.isfinite(pc).any() else float("nan")
        return out

    point = table(np.arange(len(per_case)))
    ci = bootstrap_ci(table, patients, n_boot=n_boot, seed=seed)
    result: dict[str, Any] = {}
    for key, value in point.items():
        entry = {
            "value": json_number(value),
            "ci95": [json_number(v) for v in ci.get(key, [np.nan, np.nan])],
        }
        if "/" in key:
            c, m = key.split("/")
            result.setdefault("per_class", {}).setdefault(c, {})[m] = entry
        else:
            result[key] = entry
    result["per_case"] = {
        cid: {c: {m: json_number(v) for m, v in d.items()} for c, d in pc.items()}
        for cid, pc in zip(case_ids, per_case, strict=True)
    }
    result["bootstrap"] = {"replicates": n_boot, "resampling_unit": "patient", "seed": seed}
    return result
