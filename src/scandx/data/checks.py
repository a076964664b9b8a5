"""Checks every reader applies to decoded pixels/voxels before anything else uses them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scandx.errors import BadImageError


def require_finite(values: np.ndarray, path: str | Path) -> np.ndarray:
    """``values`` unchanged when every value is finite; else a BadImageError naming the
    file and how many values are NaN or infinite (one such voxel makes training NaN)."""
    if values.dtype.kind not in "fc":
        return values
    finite = np.isfinite(values)
    if not finite.all():
        bad = int(values.size - np.count_nonzero(finite))
        n_nan = int(np.count_nonzero(np.isnan(values)))
        raise BadImageError(
            f"{bad} of {values.size} values are not finite ({n_nan} NaN, {bad - n_nan} "
            "infinite); repair or remove this image",
            path,
        )
    return values


def squeeze_trailing(values: np.ndarray, keep: int) -> np.ndarray:
    """Drop singleton axes after the first ``keep`` (a (X, Y, Z, 1) NIfTI is 3D)."""
    while values.ndim > keep and values.shape[-1] == 1:
        values = values[..., 0]
    return values
