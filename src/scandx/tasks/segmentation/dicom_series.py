"""A DICOM series as a volume (its SEG labels: dicom_seg.py).

The series' slices are ordered along the slice normal (ImageOrientationPatient x
ImagePositionPatient), pixel values go through the Modality LUT only (CT in HU, no
windowing: segmentation normalises intensities itself), and the voxel-to-patient
affine is kept (converted from DICOM's LPS to NIfTI's RAS) for writing predictions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scandx.data.checks import require_finite
from scandx.data.dicom import check_compressed
from scandx.errors import BadImageError, ScandxError


def is_dicom_seg(path: str | Path) -> bool:
    import pydicom

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception:
        return False
    return str(ds.get("Modality", "")) == "SEG"


def series_files(folder: Path, limit: int | None = None) -> tuple[list[Path], list[Path]]:
    """(image slices, SEG objects) among a folder's DICOM files (only Modality is read;
    ``limit`` caps how many files are looked at, for a quick layout check)."""
    import pydicom

    images, segs = [], []
    files = [f for f in sorted(folder.iterdir()) if f.is_file() and not f.name.startswith(".")]
    for f in files[:limit]:
        try:
            ds = pydicom.dcmread(str(f), stop_before_pixels=True, specific_tags=["Modality"])
        except Exception:
            continue  # not DICOM: ignored (README, licence files)
        (segs if str(ds.get("Modality", "")) == "SEG" else images).append(f)
    return images, segs


def read_series(
    folder: Path,
) -> tuple[np.ndarray, tuple[float, float, float], np.ndarray, list[str]]:
    """(volume (Z, Y, X) in modality units, spacing (z, y, x), RAS affine, SOP UIDs by slice)."""
    import pydicom
    from pydicom.pixels import apply_modality_lut

    files, _ = series_files(folder)
    if not files:
        raise ScandxError("no DICOM image slices in the case folder", folder)
    slices = []
    for f in files:
        try:
            ds = pydicom.dcmread(str(f))
            check_compressed(ds, f)
            arr = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
        except BadImageError:
            raise
        except Exception as e:
            raise BadImageError(f"unreadable DICOM slice ({e})", f) from e
        if arr.ndim != 2:
            raise BadImageError("expected single-frame slices in a series", f)
        require_finite(arr, f)
        slices.append((ds, arr))
    iop = np.array(slices[0][0].ImageOrientationPatient, dtype=float)
    row_dir, col_dir = iop[:3], iop[3:]
    normal = np.cross(row_dir, col_dir)
    slices.sort(key=lambda s: float(np.dot(normal, np.array(s[0].ImagePositionPatient, float))))
    positions = np.array(
        [np.dot(normal, np.array(s[0].ImagePositionPatient, float)) for s in slices]
    )
    dz = (
        float(np.median(np.diff(positions)))
        if len(slices) > 1
        else float(slices[0][0].get("SliceThickness", 1.0))
    )
    dy, dx = (float(v) for v in slices[0][0].PixelSpacing)
    shapes = {a.shape for _, a in slices}
    if len(shapes) > 1:
        raise ScandxError(f"slices of different sizes {sorted(shapes)}", folder)
    volume = np.stack([a for _, a in slices])
    affine = np.eye(4)
    affine[:3, 0] = normal * dz  # array axis 0: slices
    affine[:3, 1] = col_dir * dy  # axis 1: rows
    affine[:3, 2] = row_dir * dx  # axis 2: columns
    affine[:3, 3] = np.array(slices[0][0].ImagePositionPatient, float)
    affine[:2] *= -1  # LPS -> RAS
    uids = [str(ds.SOPInstanceUID) for ds, _ in slices]
    return volume, (abs(dz), dy, dx), affine, uids


def slice_positions(affine_ras: np.ndarray, n: int) -> np.ndarray:
    """ImagePositionPatient (LPS) of each of ``n`` slices of a ``read_series`` volume."""
    pos = np.array([affine_ras @ np.array([z, 0.0, 0.0, 1.0]) for z in range(n)])[:, :3]
    pos[:, :2] *= -1  # RAS -> LPS
    return pos
