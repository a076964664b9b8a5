"""A DICOM series as a volume (its SEG labels: dicom_seg.py).

The series' slices are ordered along the slice normal (ImageOrientationPatient x
ImagePositionPatient), pixel values go through the Modality LUT only (CT in HU, no
windowing: segmentation normalises intensities itself), and the voxel-to-patient
affine is kept (converted from DICOM's LPS to NIfTI's RAS) for writing predictions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scandx.data.dicom import read_header
from scandx.errors import ScandxError


def is_dicom_seg(path: str | Path) -> bool:
    try:
        ds = read_header(Path(path))
    except Exception:
        return False
    return str(ds.get("Modality", "")) == "SEG"


def series_files(folder: Path, limit: int | None = None) -> tuple[list[Path], list[Path]]:
    """(image slices, SEG objects) among a folder's DICOM files (only Modality is read;
    ``limit`` caps how many files are looked at, for a quick layout check)."""
    images, segs = [], []
    files = [f for f in sorted(folder.iterdir()) if f.is_file() and not f.name.startswith(".")]
    for f in files[:limit]:
        try:
            ds = read_header(Path(f), specific_tags=["Modality"])
        except Exception:
            continue  # not DICOM: ignored (README, licence files)
        (segs if str(ds.get("Modality", "")) == "SEG" else images).append(f)
    return images, segs


def read_series(
    folder: Path,
) -> tuple[np.ndarray, tuple[float, float, float], np.ndarray, list[str]]:
    """(volume (Z, Y, X) in modality units, spacing (z, y, x), RAS affine, SOP UIDs by slice).

    The folder must hold one 3D image series (SEG objects beside it are left out); it is
    assembled and checked by the shared ``data.series`` code (ordering along the normal,
    missing or duplicate slices refused, tilt and non-uniform spacing resampled)."""
    from scandx.data.series import group_studies, load_series

    series = [s for study in group_studies(folder) for s in study.series]
    if not series:
        raise ScandxError("no DICOM image slices in the case folder", folder)
    if len(series) > 1:
        raise ScandxError(
            f"the case folder holds {len(series)} image series "
            f"({', '.join(s.ref for s in series)}); one is expected",
            folder,
        )
    volume = load_series(series[0])
    if volume.is_4d:
        raise ScandxError(
            f"series {volume.series_ref} has a time axis ({volume.array.shape[0]} time points "
            f"by {volume.time_key}); segmentation expects one 3D volume",
            folder,
        )
    return volume.array, volume.spacing, volume.affine, volume.sop_uids


def slice_positions(affine_ras: np.ndarray, n: int) -> np.ndarray:
    """ImagePositionPatient (LPS) of each of ``n`` slices of a ``read_series`` volume."""
    pos = np.array([affine_ras @ np.array([z, 0.0, 0.0, 1.0]) for z in range(n)])[:, :3]
    pos[:, :2] *= -1  # RAS -> LPS
    return pos
