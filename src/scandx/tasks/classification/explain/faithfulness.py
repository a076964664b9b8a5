"""Is a heatmap faithful? Two checks on images whose finding is known.

- pointing game: the heatmap's maximum lies inside the lesion;
- deletion: hiding the 10% of pixels the heatmap ranks highest lowers the class
  score more than hiding 10% of pixels at random (hidden pixels take the image's
  mean display value).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def pointing_hit(heat: np.ndarray, cx: float, cy: float, radius: float) -> bool:
    """True when the heatmap maximum is within ``radius`` pixels of the lesion centre."""
    y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return bool((x - cx) ** 2 + (y - cy) ** 2 <= radius**2)


def delete_pixels(display: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Copy of a (C, H, W) display image with ``mask`` pixels set to the image mean."""
    out = display.copy()
    out[:, mask] = display.mean()
    return out


def deletion_drops(
    display: np.ndarray,
    heat: np.ndarray,
    score: Callable[[np.ndarray], float],
    fraction: float = 0.1,
    random_draws: int = 5,
    seed: int = 0,
) -> tuple[float, float]:
    """(score drop when the top ``fraction`` of heatmap pixels are hidden,
    mean score drop when the same number of random pixels are hidden)."""
    base = score(display)
    k = max(1, int(round(fraction * heat.size)))
    top = np.zeros(heat.size, bool)
    top[np.argsort(heat.ravel())[::-1][:k]] = True
    drop_top = base - score(delete_pixels(display, top.reshape(heat.shape)))
    rng = np.random.default_rng(seed)
    drops = []
    for _ in range(random_draws):
        rand = np.zeros(heat.size, bool)
        rand[rng.choice(heat.size, k, replace=False)] = True
        drops.append(base - score(delete_pixels(display, rand.reshape(heat.shape))))
    return float(drop_top), float(np.mean(drops))
