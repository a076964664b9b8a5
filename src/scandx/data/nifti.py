"""NIfTI volumes as stored (voxel order, affine, spacing), checked before use."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scandx.data.checks import require_finite, squeeze_trailing
from scandx.errors import BadImageError


def read_nifti(
    path: str | Path, max_dims: int = 4
) -> tuple[np.ndarray, tuple[float, ...], np.ndarray]:
    """(voxels, spacing of the first three axes, 4x4 affine) of a NIfTI file.

    Trailing singleton axes are dropped; more than ``max_dims`` axes left (3 for label
    maps and masks, 4 for images whose 4th axis holds channels) or any NaN/Inf voxel is
    a BadImageError naming the file."""
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj)
        zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
        affine = np.asarray(img.affine, dtype=np.float64)
    except Exception as e:  # nibabel raises many types for broken files
        raise BadImageError(f"unreadable NIfTI ({type(e).__name__}: {e})", path) from None
    data = squeeze_trailing(data, 3)
    if data.ndim > max_dims:
        what = "a 3D volume" if max_dims == 3 else "a 3D volume or 4D channels"
        raise BadImageError(
            f"{data.ndim}D NIfTI of shape {tuple(data.shape)} where {what} is expected", path
        )
    if data.ndim < 2 or 0 in data.shape:
        raise BadImageError(f"NIfTI of shape {tuple(data.shape)} is not an image", path)
    spatial = zooms[: min(data.ndim, 3)]
    if not all(np.isfinite(z) and z > 0 for z in spatial):
        raise BadImageError(f"voxel spacing {spatial} is not positive and finite", path)
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise BadImageError("the affine is singular or not finite", path)
    return require_finite(data, path), zooms, affine
