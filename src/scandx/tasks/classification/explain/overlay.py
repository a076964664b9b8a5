"""Heatmaps back on the image as the clinician views it (the reader applies the windowing)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def unletterbox(heat: np.ndarray, original: tuple[int, ...]) -> np.ndarray:
    """Undo ``letterbox_resize``: from the model's input grid back to the image's shape
    ((H, W), or (D, H, W) for volumes)."""
    size = heat.shape
    scale = min(o / s for o, s in zip(original, size, strict=True))
    padded = [max(o, round(s * scale)) for o, s in zip(original, size, strict=True)]
    mode = "bilinear" if len(size) == 2 else "trilinear"
    up = F.interpolate(
        torch.from_numpy(np.ascontiguousarray(heat))[None, None],
        size=padded,
        mode=mode,
        align_corners=False,
    )[0, 0]
    crop = tuple(
        slice((p - o) // 2, (p - o) // 2 + o) for p, o in zip(padded, original, strict=True)
    )
    return up[crop].numpy()


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


def slice_overlays(display: np.ndarray, heat: np.ndarray) -> list[np.ndarray]:
    """Per-slice overlays of a volume: display (C, D, H, W), heat (D, H, W)."""
    return [overlay(display[:, z], heat[z]) for z in range(heat.shape[0])]


def montage(tiles: list[np.ndarray]) -> np.ndarray:
    """Tiles (H, W, 3) in a near-square grid with a 2-px dark border between them."""
    if tiles[0].shape[0] < 96:  # small slices: enlarge (nearest) so that they can be read
        f = 96 // tiles[0].shape[0] + 1
        tiles = [np.repeat(np.repeat(t, f, axis=0), f, axis=1) for t in tiles]
    n = len(tiles)
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    h, w = tiles[0].shape[:2]
    out = np.full((rows * (h + 2) + 2, cols * (w + 2) + 2, 3), 32, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        out[2 + r * (h + 2) : 2 + r * (h + 2) + h, 2 + c * (w + 2) : 2 + c * (w + 2) + w] = t
    return out


def peak_slice(heat: np.ndarray) -> int:
    """Index of the slice holding the heatmap maximum of a (D, H, W) map."""
    return int(np.unravel_index(int(np.argmax(heat)), heat.shape)[0])
