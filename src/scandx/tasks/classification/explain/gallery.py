"""Grad-CAM gallery for the report: true/false positives/negatives of an evaluated split.

For a binary task the categories are decided at the run's operating threshold; the
positive class is explained. Multi-label tasks pool (image, label) pairs at each
label's threshold. Multi-class tasks show correct and wrong top-1 predictions, each
explaining its predicted class. Within a category the most confident cases come first
(the errors a reader most needs to see).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from scandx.core.report import png_base64
from scandx.errors import ScandxError
from scandx.tasks.classification.data.images import read_case
from scandx.tasks.classification.data.manifest import Case
from scandx.tasks.classification.explain.explain import explain_display
from scandx.tasks.classification.explain.overlay import overlay, peak_slice
from scandx.tasks.classification.inference.predictor import Predictor


def select_gallery(
    task: str, y: np.ndarray, probs: np.ndarray, decisions: np.ndarray, per_category: int = 4
) -> dict[str, list[tuple[int, int]]]:
    """{category: [(case index, class index), ...]}, most confident first."""
    if task == "multiclass":
        pred = probs.argmax(1)
        conf = probs.max(1)
        out = {}
        for name, mask in (("correct", pred == y), ("wrong", pred != y)):
            idx = np.flatnonzero(mask)
            idx = idx[np.argsort(-conf[idx], kind="mergesort")][:per_category]
            out[name] = [(int(i), int(pred[i])) for i in idx]
        return out
    if task == "binary":
        truth, dec, score = (y == 1)[:, None], decisions.astype(bool)[:, None], probs[:, 1:2]
        label_of = [1]
    else:
        truth, dec, score = y.astype(bool), decisions.astype(bool), probs
        label_of = list(range(probs.shape[1]))
    cases, labels = np.meshgrid(np.arange(len(y)), np.arange(truth.shape[1]), indexing="ij")
    cells = {
        "true positive": truth & dec,
        "false positive": ~truth & dec,
        "false negative": truth & ~dec,
        "true negative": ~truth & ~dec,
    }
    out = {}
    for name, mask in cells.items():
        s = score[mask]
        order = np.argsort(-s if name.endswith("positive") else s, kind="mergesort")
        picks = list(zip(cases[mask][order], labels[mask][order], strict=True))[:per_category]
        out[name] = [(int(i), label_of[int(j)]) for i, j in picks]
    return out


def render_gallery(
    predictor: Predictor,
    cases: Sequence[Case],
    selection: dict[str, list[tuple[int, int]]],
    method: str = "auto",
) -> dict[str, list[dict[str, Any]]]:
    """Overlay thumbnails (PNG as base64) for each selected case."""
    out: dict[str, list[dict[str, Any]]] = {}
    for category, picks in selection.items():
        items = []
        for i, k in picks:
            case = cases[i]
            try:
                display = read_case(case)
                r = explain_display(predictor, display, case.path, method, k)
            except ScandxError:
                continue
            heat, shown = r["heatmap"], r["display"]
            item = {
                "case_id": case.case_id,
                "class": r["class"],
                "probability": r["probability"],
                "method": r["method"],
            }
            if heat.ndim == 3:  # a volume: the slice holding the heatmap's maximum
                z = peak_slice(heat)
                heat, shown = heat[z], shown[:, z]
                item["slice"] = z
            items.append({**item, "png_base64": png_base64(overlay(shown, heat))})
        out[category] = items
    return out
