"""Post-processing chosen on validation cases: the binary decision threshold and
largest-connected-component filtering (nnU-Net's rule), each kept only where it raises
the validation Dice."""

from __future__ import annotations

from typing import Any

import numpy as np

from scandx.tasks.segmentation.metrics import dice

THRESHOLDS = np.round(np.arange(0.30, 0.701, 0.05), 2)


def keep_largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest connected component (face connectivity) of a boolean mask."""
    from scipy import ndimage

    labelled, n = ndimage.label(mask)
    if n <= 1:
        return mask.astype(bool)
    sizes = np.bincount(labelled.ravel())
    sizes[0] = 0
    return labelled == int(np.argmax(sizes))


def _inside(lab: np.ndarray, fov: np.ndarray | None) -> np.ndarray:
    return np.ones(lab.shape, bool) if fov is None else fov


def choose_threshold(
    fg_probs: list[np.ndarray], labels: list[np.ndarray], fovs: list[np.ndarray | None]
) -> dict[str, Any]:
    """Binary tasks: the foreground-probability threshold (0.30..0.70) with the best mean
    validation Dice; 0.5 (argmax) unless another is strictly better."""
    scores = {}
    for t in THRESHOLDS:
        per = [
            dice((p >= t) & _inside(lab, fov), (lab == 1) & _inside(lab, fov))
            for p, lab, fov in zip(fg_probs, labels, fovs, strict=True)
        ]
        scores[float(t)] = float(np.mean(per))
    best = max(scores, key=lambda t: (scores[t], t == 0.5))
    return {"value": best, "val_dice": scores[best], "val_dice_at_0.5": scores[0.5]}


def choose_components(
    preds: list[np.ndarray],
    labels: list[np.ndarray],
    fovs: list[np.ndarray | None],
    n_classes: int,
) -> dict[str, Any]:
    """Per class: keep only its largest connected component when that raises the mean
    validation Dice of that class."""
    chosen = {}
    for k in range(1, n_classes):
        before, after = [], []
        for p, lab, fov in zip(preds, labels, fovs, strict=True):
            inside = _inside(lab, fov)
            t = (lab == k) & inside
            before.append(dice((p == k) & inside, t))
            after.append(dice(keep_largest_component(p == k) & inside, t))
        chosen[str(k)] = {
            "keep_largest_component": bool(np.mean(after) > np.mean(before)),
            "val_dice_before": float(np.mean(before)),
            "val_dice_after": float(np.mean(after)),
        }
    return chosen


def apply_postprocessing(pred: np.ndarray, post: dict[str, Any]) -> np.ndarray:
    out = pred.copy()
    for k, rule in post.items():
        if rule.get("keep_largest_component"):
            mask = pred == int(k)
            out[mask & ~keep_largest_component(mask)] = 0
    return out


def label_map(
    probs: np.ndarray, post: dict[str, Any], threshold: dict[str, Any] | None = None
) -> np.ndarray:
    """Labels from probabilities (K, *S): the chosen threshold for a binary task, else
    argmax; then the chosen component filtering."""
    if threshold and probs.shape[0] == 2:
        pred = (probs[1] >= threshold["value"]).astype(np.int64)
    else:
        pred = probs.argmax(0)
    return apply_postprocessing(pred, post)
