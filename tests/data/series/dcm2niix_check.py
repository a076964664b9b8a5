"""scandx's series assembly against dcm2niix: shape, affine and voxels of every series.

``compare_with_dcm2niix(series)`` runs dcm2niix on the series' files (symlinked into a
temporary folder), reads its NIfTI with nibabel (scl_slope/scl_inter applied) and
compares it with ``load_series`` after both are reoriented to the closest RAS
orientation. ``python -m tests.data.series.dcm2niix_check FOLDER...`` prints the table.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from scandx.data.series import Series, Volume, group_studies, load_series
from scandx.errors import ScandxError

AFFINE_TOLERANCE = 1e-3


@dataclass
class Row:
    name: str  # the first file of the series (relative), never a UID
    modality: str
    files: int
    scandx: str  # shape, or "refused: ..."
    dcm2niix: str  # shapes written, or why none
    outcome: str  # match | mismatch: ... | not compared: ...


def dcm2niix() -> str | None:
    return shutil.which("dcm2niix")


def as_nifti(volume: Volume) -> nib.Nifti1Image:
    """A Volume as a NIfTI image: array (X, Y, Z[, T]), affine on (x, y, z) indices."""
    data = volume.array
    data = np.transpose(data, (2, 1, 0)) if data.ndim == 3 else np.transpose(data, (3, 2, 1, 0))
    affine = volume.affine.copy()
    affine[:, :3] = volume.affine[:, [2, 1, 0]]
    return nib.Nifti1Image(np.ascontiguousarray(data), affine)


def _run_dcm2niix(series: Series, work: Path) -> list[nib.Nifti1Image]:
    src, out = work / "in", work / "out"
    src.mkdir()
    out.mkdir()
    for k, inst in enumerate(series.instances):
        (src / f"{k:05d}.dcm").symlink_to(inst.path.resolve())
    subprocess.run(
        [dcm2niix() or "dcm2niix", "-z", "n", "-b", "n", "-f", "s", "-o", str(out), str(src)],
        check=False,
        capture_output=True,
        timeout=120,
    )
    return [nib.load(str(p)) for p in sorted(out.glob("*.nii"))]


def _differences(ours: nib.Nifti1Image, theirs: nib.Nifti1Image, placed: bool) -> str | None:
    if not placed:  # no patient position: voxels in stored order (dcm2niix may flip rows)
        va = np.asarray(ours.dataobj, dtype=np.float64)
        vb = np.asarray(theirs.get_fdata(), dtype=np.float64)
        if vb.shape != va.shape:
            return f"shape {va.shape} vs {vb.shape}"
        if any(np.allclose(va, v, rtol=1e-5, atol=1e-3) for v in (vb, vb[:, ::-1])):
            return None
        return f"voxels differ (max {float(np.abs(va - vb[:, ::-1]).max()):.3g})"
    a, b = nib.as_closest_canonical(ours), nib.as_closest_canonical(theirs)
    shape_a, shape_b = a.shape, tuple(d for d in b.shape)
    while len(shape_b) > len(shape_a) and shape_b[-1] == 1:
        shape_b = shape_b[:-1]
    if shape_a != shape_b:
        return f"shape {shape_a} vs {shape_b}"
    worst = float(np.abs(a.affine - b.affine).max())
    if worst > AFFINE_TOLERANCE and placed:
        return f"affine differs by {worst:.3g}"
    va = np.asarray(a.get_fdata(), dtype=np.float64)
    vb = np.asarray(b.get_fdata(), dtype=np.float64).reshape(va.shape)
    if not np.allclose(va, vb, rtol=1e-5, atol=1e-3):
        return f"voxels differ (max {float(np.abs(va - vb).max()):.3g})"
    return None


def compare_with_dcm2niix(series: Series, root: Path | None = None) -> Row:
    first = series.instances[0].path
    name = str(first.relative_to(root)) if root and first.is_relative_to(root) else first.name
    row = Row(name, series.modality, len(series.instances), "", "", "")
    try:
        volume = load_series(series)
        row.scandx = "x".join(map(str, volume.array.shape)) + (
            "" if volume.has_geometry else " (no position)"
        )
    except ScandxError as e:
        volume = None
        row.scandx = "refused: " + e.reason
    with tempfile.TemporaryDirectory(prefix="scandx-d2n-") as tmp:
        outputs = _run_dcm2niix(series, Path(tmp))
        row.dcm2niix = ", ".join("x".join(map(str, o.shape)) for o in outputs) or "no output"
        if volume is None:
            row.outcome = "not compared: scandx refused" + (
                "" if outputs else "; dcm2niix wrote nothing"
            )
            return row
        if not outputs:
            row.outcome = "not compared: dcm2niix wrote nothing"
            return row
        ours = as_nifti(volume)
        problems = [_differences(ours, o, volume.has_geometry) for o in outputs]
    if None in problems:
        row.outcome = "match" if volume.has_geometry else "match (shape, voxels; no position)"
    else:
        row.outcome = "mismatch: " + "; ".join(p for p in problems if p)
    return row


def table(folders: list[Path]) -> list[Row]:
    rows = []
    for folder in folders:
        for study in group_studies(folder):
            rows += [compare_with_dcm2niix(s, folder) for s in study.series]
    return rows


if __name__ == "__main__":
    for r in table([Path(p) for p in sys.argv[1:]]):
        print(f"| {r.name} | {r.modality} | {r.files} | {r.scandx} | {r.dcm2niix} | {r.outcome} |")
