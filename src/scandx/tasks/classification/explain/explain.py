"""Explain a trained run's prediction for image files: heatmap, overlay, summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from scandx.data.readers import read_image
from scandx.errors import ScandxError
from scandx.tasks.classification.data.images import preprocess
from scandx.tasks.classification.explain.cam import (
    METHODS,
    default_method,
    explain_tensor,
    networks,
    target_layers,
)
from scandx.tasks.classification.explain.overlay import (
    montage,
    overlay,
    save_png,
    slice_overlays,
    unletterbox,
)
from scandx.tasks.classification.inference.predictor import Predictor


def explain_file(
    predictor: Predictor,
    path: str | Path,
    method: str = "auto",
    class_name: str | None = None,
    layers: list[str] | None = None,
) -> dict[str, Any]:
    """Heatmap (in the image's own geometry) for one file, with the prediction it explains.

    The class explained is ``class_name``, else the positive class of a binary task,
    else the most probable class or label.
    """
    if class_name is not None and class_name not in predictor.classes:
        raise ScandxError(f"unknown class {class_name!r}; the model has {predictor.classes}")
    display, _ = read_image(path)
    k = predictor.classes.index(class_name) if class_name is not None else None
    return {
        "path": str(path),
        **explain_display(predictor, display, str(path), method, k, layers),
    }


def explain_display(
    predictor: Predictor,
    display: np.ndarray,
    where: str,
    method: str = "auto",
    class_index: int | None = None,
    layers: list[str] | None = None,
) -> dict[str, Any]:
    """Heatmap for a display-space image (C, H, W) already read; see ``explain_file``."""
    if method != "auto" and method not in METHODS:
        raise ScandxError(f"unknown method {method!r}; choose auto or {', '.join(METHODS)}")
    x = preprocess(display, predictor.contract, where)[None]
    probs = predictor.probabilities(x)[0]
    k = class_index
    if k is None:
        k = 1 if predictor.task == "binary" else int(np.argmax(probs))
    # An ensemble (cross-validated run) is explained by the mean of its members' maps, a
    # member kept as a SeedEnsemble by the mean of its seeds' networks' maps, each network
    # at its own target layers (one fold may have kept a second seed, another not).
    models = [m.model for m in getattr(predictor, "members", [predictor])]
    if method == "auto":
        method = default_method(networks(models[0])[0])
    shape = tuple(x.shape[1:])
    jobs: list[list[tuple[Any, list[str] | None]]] = []
    for model in models:
        if method == "occlusion":  # model-agnostic: the member as it predicts
            jobs.append([(model, None)])
        else:
            jobs.append([(net, layers or target_layers(net, shape)) for net in networks(model)])
    heat_input = np.mean(
        [np.mean([explain_tensor(n, x, k, method, ls) for n, ls in job], axis=0) for job in jobs],
        axis=0,
    )
    layers = jobs[0][0][1]
    heat = unletterbox(heat_input, display.shape[1:])
    return {
        "class": predictor.classes[k],
        "probability": float(probs[k]),
        "method": method,
        "layer": "+".join(layers or []),
        "heatmap": heat,
        "display": display,
    }


def write_explanation(result: dict[str, Any], out_dir: Path, index: int = 0) -> Path:
    """Save the overlay PNG (and the raw heatmap as .npy); returns the PNG path.

    Volumes: one overlay per slice in ``<stem>_slices/slice_<z>.png`` and a montage of
    all slices as the returned PNG.
    """
    # named by position, never by the input's name (file names may identify the patient)
    stem = f"{index:04d}_{result['method']}"
    png = out_dir / f"{stem}.png"
    heat = result["heatmap"]
    if heat.ndim == 3:
        tiles = slice_overlays(result["display"], heat)
        for z, tile in enumerate(tiles):
            save_png(out_dir / f"{stem}_slices" / f"slice_{z:03d}.png", tile)
        save_png(png, montage(tiles))
    else:
        save_png(png, overlay(result["display"], heat))
    np.save(out_dir / f"{stem}.npy", heat.astype(np.float32))
    return png
