"""Heatmaps back on the image as the clinician views it (the reader applies the windowing)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def unletterbox(heat: np.ndarray, original_hw: tuple[int, int]) -> np.ndarray:
    """Undo ``letterbox_resize``: from the model's input grid back to the image's (H, W)."""
    h, w = original_hw
    size = heat.shape
    scale = min(h / size[0], w / size[1])
    ph, pw = max(h, round(size[0] * scale)), max(w, round(size[1] * scale))
    up = F.interpolate(
        torch.from_numpy(heat)[None, None], size=(ph, pw), mode="bilinear", align_corners=False
    )
    top, left = (ph - h) // 2, (pw - w) // 2
    return up[0, 0, top : top + h, left : left + w].numpy()


def jet(v: np.ndarray) -> np.ndarray:
    """The jet colour map, (..., 3) in [0, 1]."""
    r = np.clip(1.5 - np.abs(4 * v - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * v - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * v - 1), 0, 1)
    return np.stack([r, g, b], axis=-1)


def overlay(display: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """uint8 RGB (H, W, 3): the display image (C, H, W in [0, 1]) with the heatmap blended in."""
    base = np.repeat(display[:1], 3, axis=0) if display.shape[0] == 1 else display[:3]
    base = np.moveaxis(base, 0, -1)
    weight = alpha * heat[..., None]  # strong colour where the map is high, the image elsewhere
    out = (1 - weight) * base + weight * jet(heat)
    return np.round(np.clip(out, 0, 1) * 255).astype(np.uint8)


def save_png(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb, mode="RGB").save(path)
