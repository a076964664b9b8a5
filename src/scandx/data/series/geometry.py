"""Frames -> a volume on a regular grid, or a refusal naming what is wrong.

Slices are ordered along the normal of ImageOrientationPatient (row x column). Then:
* mixed sizes, orientations or pixel spacings: refused;
* two slices at one position that no temporal attribute separates: refused;
* a gap larger than ``GAP_FACTOR`` x the median spacing (a missing slice): refused;
* spacing that varies by more than ``UNIFORM_TOLERANCE`` (relative) but has no such gap:
  resampled to the median spacing, linear along the normal;
* slices displaced in-plane along the stack (gantry tilt, an oblique stack): each slice
  is shifted (linear interpolation, scipy) onto an orthogonal grid through slice 0.
Every correction is written to ``Volume.notes``.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from scandx.data.series.frames import Frame
from scandx.data.series.model import Volume
from scandx.errors import ScandxError

log = logging.getLogger(__name__)

GAP_FACTOR = 1.5
UNIFORM_TOLERANCE = 0.01  # relative spacing variation accepted as uniform
POSITION_TOLERANCE = 0.01  # mm: positions closer than this are the same position
TILT_TOLERANCE = 0.01  # mm of in-plane displacement per slice ignored as rounding


def _refuse(where: str, reason: str) -> ScandxError:
    return ScandxError(reason, where)


def check_uniform(frames: list[Frame], where: str) -> None:
    """Refuse frames of different sizes, orientations or pixel spacings."""
    shapes = sorted({f.pixels.shape for f in frames})
    if len(shapes) > 1:
        raise _refuse(where, f"slices of different sizes {shapes}: not one volume")
    orientations = [f.orientation for f in frames if f.orientation is not None]
    if orientations and any(not np.allclose(o, orientations[0], atol=1e-3) for o in orientations):
        raise _refuse(where, "slices of different orientations: not one volume")
    spacings = {f.spacing for f in frames if f.spacing is not None}
    if len(spacings) > 1 and not all(
        np.allclose(s, next(iter(spacings)), rtol=1e-4) for s in spacings
    ):
        raise _refuse(
            where, f"slices of different pixel spacings {sorted(spacings)}: not one volume"
        )


def unplaced_volume(frames: list[Frame], where: str, ref: str) -> Volume:
    """Frames without patient position (radiographs, cine loops): stacked as they come,
    placed as an axial stack at the origin (rows along posterior, columns along left, as
    DICOM's identity orientation; dcm2niix assumes the same) with the pixel spacing."""
    dy, dx = frames[0].spacing or (1.0, 1.0)
    affine = np.eye(4)
    affine[:3, :3] = [[0.0, 0.0, -dx], [0.0, -dy, 0.0], [1.0, 0.0, 0.0]]  # (z, y, x) -> RAS
    return Volume(
        array=np.stack([f.pixels for f in frames]).astype(np.float32),
        spacing=(1.0, dy, dx),
        affine=affine,
        slice_uids=[[f.sop_uid for f in frames]],
        frame_numbers=[[f.frame_number for f in frames]],
        series_ref=ref,
        has_geometry=False,
        notes=[
            "no patient position: frames stacked in file order, affine holds the pixel spacing only"
        ],
    )


def _axes(frame: Frame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    iop = frame.orientation
    assert iop is not None
    row, col = iop[:3] / np.linalg.norm(iop[:3]), iop[3:] / np.linalg.norm(iop[3:])
    return row, col, np.cross(row, col)


def order_phase(frames: list[Frame], where: str) -> list[Frame]:
    """One time point's frames sorted along the normal; duplicates refused."""
    normal = _axes(frames[0])[2]
    ordered = sorted(frames, key=lambda f: float(normal @ f.position))  # type: ignore[operator]
    s = np.array([float(normal @ f.position) for f in ordered])  # type: ignore[operator]
    same = np.flatnonzero(np.diff(s) < POSITION_TOLERANCE)
    if same.size:
        raise _refuse(
            where,
            f"duplicate slice positions ({same.size} repeated, first at {s[same[0]]:.2f} mm along "
            "the normal) and no temporal attribute separates them into time points",
        )
    return ordered


def build_volume(phases: list[list[Frame]], where: str, ref: str) -> Volume:
    """A regular (Z, Y, X) or (T, Z, Y, X) volume from placed frames, sorted per phase."""
    ordered = [order_phase(p, where) for p in phases]
    first = ordered[0]
    row, col, normal = _axes(first[0])
    s = np.array([float(normal @ f.position) for f in first])  # type: ignore[operator]
    for t, phase in enumerate(ordered[1:], start=2):
        other = np.array([float(normal @ f.position) for f in phase])  # type: ignore[operator]
        if other.shape != s.shape or not np.allclose(other, s, atol=0.05):
            raise _refuse(where, f"time point {t} covers other slice positions than time point 1")
    dy, dx = first[0].spacing or (1.0, 1.0)
    notes: list[str] = []
    stacks = [np.stack([f.pixels for f in phase]).astype(np.float32) for phase in ordered]
    uids = [[f.sop_uid for f in phase] for phase in ordered]
    numbers = [[f.frame_number for f in phase] for phase in ordered]
    if len(first) == 1:
        dz = first[0].thickness or 1.0
    else:
        gaps = np.diff(s)
        dz = float(np.median(gaps))
        worst = int(np.argmax(gaps))
        if gaps[worst] > GAP_FACTOR * dz:
            raise _refuse(
                where,
                f"missing slices: a gap of {gaps[worst]:.2f} mm between slices {worst + 1} and "
                f"{worst + 2} of {len(s)} (median spacing {dz:.2f} mm, more than "
                f"{GAP_FACTOR}x is refused)",
            )
        offsets = _in_plane_offsets(first, row, col, normal, s, where)
        if offsets is not None:
            stacks = [_shift_slices(st, offsets, dy, dx) for st in stacks]
            angle = math.degrees(
                math.atan(float(np.linalg.norm(offsets[-1])) / max(s[-1] - s[0], 1e-9))
            )
            notes.append(
                f"gantry tilt / oblique stack ({angle:.1f} degrees): slices shifted in-plane onto "
                "an orthogonal grid (linear interpolation)"
            )
        if float(np.max(np.abs(gaps - dz))) > UNIFORM_TOLERANCE * dz:
            stacks, uids, numbers = _resample_z(stacks, uids, numbers, s, dz)
            notes.append(
                f"non-uniform slice spacing ({gaps.min():.3g}-{gaps.max():.3g} mm) resampled to "
                f"the median {dz:.3g} mm (linear); slice UIDs name the nearest source slice"
            )
    affine = np.eye(4)
    affine[:3, 0] = normal * dz
    affine[:3, 1] = col * dy
    affine[:3, 2] = row * dx
    affine[:3, 3] = first[0].position  # type: ignore[assignment]
    affine[:2] *= -1  # LPS -> RAS
    array = stacks[0] if len(stacks) == 1 else np.stack(stacks)
    for note in notes:
        log.info("series %s: %s", ref, note)
    return Volume(array, (abs(dz), dy, dx), affine, uids, numbers, ref, notes=notes)


def _in_plane_offsets(
    frames: list[Frame],
    row: np.ndarray,
    col: np.ndarray,
    normal: np.ndarray,
    s: np.ndarray,
    where: str,
) -> np.ndarray | None:
    """Per slice (row, column) displacement in mm of its origin from the normal through
    slice 0, or None when the slices are stacked straight."""
    p0 = frames[0].position
    d = np.array([f.position - p0 for f in frames])  # type: ignore[operator]
    in_plane = np.stack([d @ col, d @ row], axis=1)  # (Z, 2): along rows, along columns
    if float(np.abs(in_plane).max()) <= TILT_TOLERANCE * len(frames):
        return None
    # a tilt displaces slices in proportion to their distance along the normal
    along = s - s[0]
    slope = np.linalg.lstsq(along[:, None], in_plane, rcond=None)[0]
    if float(np.abs(along[:, None] * slope - in_plane).max()) > 0.1 * max(
        frames[0].spacing or (1.0,)
    ):
        raise _refuse(where, "slice positions do not lie on one line: not one volume")
    return in_plane


def _shift_slices(stack: np.ndarray, offsets: np.ndarray, dy: float, dx: float) -> np.ndarray:
    from scipy.ndimage import shift

    fill = float(stack.min())
    out = np.empty_like(stack)
    for k, (along_col, along_row) in enumerate(offsets):
        # slice k's pixel (r, c) lies at the grid's (r + along_col/dy, c + along_row/dx)
        out[k] = shift(
            stack[k], (along_col / dy, along_row / dx), order=1, mode="constant", cval=fill
        )
    return out


def _resample_z(
    stacks: list[np.ndarray],
    uids: list[list[str]],
    numbers: list[list[int]],
    s: np.ndarray,
    dz: float,
) -> tuple[list[np.ndarray], list[list[str]], list[list[int]]]:
    n = int(math.floor((s[-1] - s[0]) / dz + 1e-6)) + 1
    target = s[0] + dz * np.arange(n)
    upper = np.clip(np.searchsorted(s, target, side="right"), 1, len(s) - 1)
    lower = upper - 1
    w = np.clip((target - s[lower]) / (s[upper] - s[lower]), 0.0, 1.0).astype(np.float32)
    nearest = np.where(w < 0.5, lower, upper)
    out = [
        (st[lower] * (1 - w)[:, None, None] + st[upper] * w[:, None, None]).astype(np.float32)
        for st in stacks
    ]
    return (
        out,
        [[u[i] for i in nearest] for u in uids],
        [[m[i] for i in nearest] for m in numbers],
    )
