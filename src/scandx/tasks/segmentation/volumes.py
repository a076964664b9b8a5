"""Reading segmentation cases: image channels, integer label maps, field-of-view masks.

NIfTI is read with nibabel in its stored voxel order; the affine and the voxel
spacing are kept so that predictions are written back in the same geometry. 2D
rasters go through scandx's readers (display space); label rasters stored as 0/255
(DRIVE's GIFs) become 0/1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scandx.data.nifti import read_nifti
from scandx.data.readers import read_image
from scandx.errors import BadImageError, ScandxError
from scandx.tasks.segmentation.sources import SegCase


@dataclass
class Loaded:
    image: np.ndarray  # (C, *S) float32
    label: np.ndarray | None  # (*S) int64
    fov: np.ndarray | None  # (*S) bool
    spacing: tuple[float, ...]
    affine: np.ndarray | None  # 4x4 for NIfTI inputs


def is_nifti(path: str | Path) -> bool:
    name = str(path).lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def _raster(path: str | Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L") if im.mode not in ("L", "I", "I;16") else im)
    except OSError as e:
        raise BadImageError(f"unreadable mask ({e})", path) from e


def read_label(path: str | Path) -> np.ndarray:
    if is_nifti(path):
        data = read_nifti(path, 3)[0]
        if not np.allclose(data, np.round(data)):
            raise BadImageError("label map holds non-integer values", path)
        return np.round(data).astype(np.int64)
    a = _raster(path).astype(np.int64)
    values = set(np.unique(a).tolist())
    if values <= {0, 255} or values <= {0, 1}:
        return (a > 0).astype(np.int64)
    return a


def read_fov(path: str | Path) -> np.ndarray:
    a = read_nifti(path, 3)[0] if is_nifti(path) else _raster(path)
    return np.asarray(a) > 0


def read_case_arrays(case: SegCase, labels: dict[int, str] | None = None) -> Loaded:
    """Image (C, *S), label, FOV, spacing and affine of one case, checked for agreement."""
    channels, spacing, affine, uids = [], None, None, None
    for f in case.images:
        if Path(f).is_dir():  # a DICOM series
            from scandx.tasks.segmentation.dicom_series import read_series

            volume, spacing, affine, uids = read_series(Path(f))
            arr = volume[None]
        elif is_nifti(f):
            data, zooms, aff = read_nifti(f)
            data = data.astype(np.float32)
            arr = np.moveaxis(data, -1, 0) if data.ndim == 4 else data[None]
            if spacing is not None and not np.allclose(zooms, spacing, rtol=1e-3):
                raise ScandxError(f"case {case.case_id}: channels have different spacings", f)
            spacing, affine = zooms[: arr.ndim - 1], aff
        else:
            arr = read_image(f)[0]
            spacing = spacing or (1.0,) * (arr.ndim - 1)
        if channels and arr.shape[1:] != channels[0].shape[1:]:
            raise ScandxError(
                f"case {case.case_id}: channel shapes differ {channels[0].shape[1:]} vs "
                f"{arr.shape[1:]}",
                f,
            )
        channels.append(arr)
    image = np.concatenate(channels, 0).astype(np.float32)
    label = fov = None
    if case.label and uids is not None:
        from scandx.tasks.segmentation.dicom_seg import read_dicom_seg
        from scandx.tasks.segmentation.dicom_series import slice_positions

        positions = slice_positions(affine, len(uids))
        label = read_dicom_seg(Path(case.label), uids, positions)[0]
    elif case.label:
        label = read_label(case.label)
    if label is not None:
        if label.shape != image.shape[1:]:
            raise ScandxError(
                f"case {case.case_id}: mask shape {label.shape} differs from image shape "
                f"{image.shape[1:]}",
                case.label,
            )
        if is_nifti(case.label) and affine is not None:
            _, lz, _ = read_nifti(case.label, 3)
            if not np.allclose(lz[: len(spacing)], spacing, rtol=1e-3):
                raise ScandxError(
                    f"case {case.case_id}: mask spacing {lz} differs from image spacing {spacing}",
                    case.label,
                )
        if labels is not None:
            bad = sorted(set(np.unique(label).tolist()) - set(labels))
            if bad:
                raise ScandxError(
                    f"case {case.case_id}: label values {bad} not declared "
                    f"(declared: {sorted(labels)})",
                    case.label,
                )
    if case.fov:
        fov = read_fov(case.fov)
        if fov.shape != image.shape[1:]:
            raise ScandxError(f"case {case.case_id}: FOV mask shape differs from image", case.fov)
    return Loaded(image, label, fov, tuple(spacing or ()), affine)


def resample(
    arr: np.ndarray, spacing: tuple[float, ...], target: list[float], label: bool
) -> np.ndarray:
    """Resample the trailing spatial axes of ``arr`` from ``spacing`` to ``target``
    (linear for images, nearest for label maps and masks)."""
    import torch
    import torch.nn.functional as F

    spatial = arr.shape[arr.ndim - len(target) :]
    size = [max(1, round(s * sp / t)) for s, sp, t in zip(spatial, spacing, target, strict=True)]
    if list(size) == list(spatial):
        return arr
    lead = arr.shape[: arr.ndim - len(target)]
    x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).reshape(1, -1, *spatial)
    mode = "nearest-exact" if label else ("bilinear" if len(target) == 2 else "trilinear")
    kwargs = {} if label else {"align_corners": False}
    y = F.interpolate(x, size=size, mode=mode, **kwargs)[0].numpy()
    y = y.reshape(*lead, *size)
    return y.astype(arr.dtype) if label else y
