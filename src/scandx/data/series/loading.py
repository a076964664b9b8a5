"""``load_series``: a grouped series -> a Volume in modality units with its geometry."""

from __future__ import annotations

from collections import defaultdict

from scandx.data.series.frames import Frame, instance_frames
from scandx.data.series.geometry import build_volume, check_uniform, unplaced_volume
from scandx.data.series.model import Series, Volume
from scandx.errors import ScandxError


def load_series(series: Series) -> Volume:
    """The series as a (Z, Y, X) volume, or (T, Z, Y, X) when it has a time axis.

    Refused with one ScandxError line naming the series by its keyed pseudonym (never its
    UID) when it is not one volume: mixed sizes or orientations, duplicate positions that
    are no time axis, missing slices, images without position that are several. Resampled
    (and said so in ``notes``) for gantry tilt and non-uniform spacing."""
    where = f"series {series.ref}"
    if not series.is_image:
        raise ScandxError(f"not an image series (modality {series.modality or 'unknown'})", where)
    phases = [[i for i in phase if i.is_image] for phase in (series.phases or [series.instances])]
    frames_by_phase = [
        [f for inst in phase for f in instance_frames(inst, where)] for phase in phases
    ]
    frames = [f for phase in frames_by_phase for f in phase]
    check_uniform(frames, where)
    if any(f.position is None or f.orientation is None or f.spacing is None for f in frames):
        objects = sum(len(p) for p in phases)
        if objects > 1:
            raise ScandxError(
                f"{objects} images without patient position or orientation (projection images): "
                "not one volume; read them one by one as images",
                where,
            )
        return unplaced_volume(frames, where, series.ref)
    time_key, time_values = series.time_key, list(series.time_values)
    if len(frames_by_phase) == 1:
        split = _split_by_frame_time(frames_by_phase[0])
        if split is not None:
            frames_by_phase, time_values = split
            time_key = "TemporalPositionIndex"
    volume = build_volume(frames_by_phase, where, series.ref)
    if volume.is_4d:
        volume.time_key, volume.time_values = time_key, time_values
    return volume


def _split_by_frame_time(frames: list[Frame]) -> tuple[list[list[Frame]], list[float]] | None:
    """Frames of an enhanced object split by their Temporal Position Index, when their
    positions repeat and the index separates them into equal time points."""
    positions = [tuple(round(float(v), 2) for v in f.position) for f in frames]  # type: ignore[union-attr]
    if len(set(positions)) == len(positions) or any(f.time_index is None for f in frames):
        return None
    groups: dict[float, list[Frame]] = defaultdict(list)
    for f in frames:
        groups[f.time_index].append(f)  # type: ignore[index]
    if len(groups) < 2 or len({len(g) for g in groups.values()}) != 1:
        return None
    keys = sorted(groups)
    return [groups[k] for k in keys], keys
