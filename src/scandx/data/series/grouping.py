"""A DICOM folder (or files) -> studies -> series -> time points, from headers alone.

Only headers are read (pydicom ``stop_before_pixels``). Instances are grouped by
Study and Series Instance UID; within a series whose slice positions repeat, by the
first attribute that splits it into time points that each hold every position once
(Temporal Position Identifier, Trigger Time, Acquisition Number, Echo Numbers,
Acquisition Time, Content Time): a 4D series becomes a time axis, never interleaved
slices. A SOP Instance UID met twice is kept once. Non-image objects (SR, SEG, PR, KO,
RT, waveforms) go to ``Study.others``.
"""

from __future__ import annotations

import logging
import warnings
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from scandx.data.dicom import read_dataset
from scandx.data.files import walk_files
from scandx.data.series.model import Instance, Series, Study
from scandx.errors import BadImageError

log = logging.getLogger(__name__)

TEMPORAL_KEYS = (
    "TemporalPositionIdentifier",
    "TriggerTime",
    "AcquisitionNumber",
    "EchoNumbers",
    "AcquisitionTime",
    "ContentTime",
)


def group_studies(
    paths: str | Path | Iterable[str | Path],
    skipped: list[tuple[Path, str]] | None = None,
) -> list[Study]:
    """Studies found in a folder, a file, or a list of either (walked recursively).

    Files that are not DICOM, or whose header cannot be read, are left out; when
    ``skipped`` is given, ``(path, reason)`` is appended to it for each."""
    files = list(_files(paths, skipped))
    seen: set[str] = set()
    by_series: dict[tuple[str, str], list[tuple[Instance, Any]]] = defaultdict(list)
    for path in files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = read_dataset(path, pixels=False)
                instance = header_instance(path, ds)
        except BadImageError as e:
            if skipped is not None:
                skipped.append((path, e.reason))
            continue
        except Exception as e:  # a header value of the wrong kind (text where a number belongs)
            if skipped is not None:
                skipped.append((path, f"unusable DICOM header ({type(e).__name__})"))
            continue
        sop = str(ds.get("SOPInstanceUID", "") or "")
        if sop and sop in seen:
            log.info("%s: an instance already met (same SOP Instance UID): kept once", path.name)
            continue
        seen.add(sop)
        key = (
            str(ds.get("StudyInstanceUID", "") or ""),
            str(ds.get("SeriesInstanceUID", "") or ""),
        )
        by_series[key].append((instance, ds))
    studies: dict[str, Study] = {}
    for (study_uid, series_uid), members in sorted(by_series.items()):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            series = _series(study_uid, series_uid, members)
        study = studies.setdefault(study_uid, Study(study_uid, [], []))
        (study.series if series.is_image else study.others).append(series)
    return list(studies.values())


def _files(
    paths: str | Path | Iterable[str | Path], skipped: list[tuple[Path, str]] | None
) -> Iterable[Path]:
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    for item in map(Path, items):
        if item.is_dir():
            for path, problem in walk_files(item):
                if problem is None:
                    yield path
                elif skipped is not None:
                    skipped.append((path, problem))
        else:
            yield item


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n else None


def _number(value: Any, name: str) -> float | None:
    """A temporal attribute as a number (times of day as seconds), or None."""
    if value is None or value == "":
        return None
    if not isinstance(value, str | bytes) and hasattr(value, "__len__"):
        if not len(value):
            return None
        value = value[0]
    text = str(value).strip()
    try:
        if name.endswith("Time") and name != "TriggerTime":  # TM: HHMMSS.ffffff
            return int(text[:2]) * 3600 + int(text[2:4] or 0) * 60 + float(text[4:] or 0)
        return float(text)
    except ValueError:
        return None


def header_instance(path: Path, ds: Any) -> Instance:
    """The facts grouping, loading and selecting need, from one header."""
    image_type = tuple(str(v).upper() for v in (ds.get("ImageType") or []))
    mosaic = "MOSAIC" in image_type
    frames = _int(ds.get("NumberOfFrames"), 1)
    if mosaic:
        frames = mosaic_slices(ds) or frames
    keys = {}
    for name in TEMPORAL_KEYS:
        value = _number(ds.get(name), name)
        if value is not None:
            keys[name] = value
    return Instance(
        path=path,
        sop_instance_uid=str(ds.get("SOPInstanceUID", "") or ""),
        sop_class_uid=str(ds.get("SOPClassUID", "") or ""),
        modality=str(ds.get("Modality", "") or "").upper(),
        rows=_int(ds.get("Rows"), 0),
        columns=_int(ds.get("Columns"), 0),
        frames=frames,
        samples_per_pixel=_int(ds.get("SamplesPerPixel"), 1),
        orientation=_floats(ds.get("ImageOrientationPatient"), 6) or _shared(ds, "iop"),
        position=_floats(ds.get("ImagePositionPatient"), 3),
        pixel_spacing=_floats(ds.get("PixelSpacing"), 2),  # type: ignore[arg-type]
        instance_number=_int(ds.get("InstanceNumber"), None),
        temporal_keys=keys,
        mosaic=mosaic,
        enhanced="PerFrameFunctionalGroupsSequence" in ds,
    )


def _int(value: Any, default: Any) -> Any:
    try:
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _shared(ds: Any, what: str) -> tuple[float, ...] | None:
    """ImageOrientationPatient of an enhanced object (shared, else first frame's group)."""
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        seq = ds.get(groups)
        if seq and "PlaneOrientationSequence" in seq[0]:
            return _floats(seq[0].PlaneOrientationSequence[0].get("ImageOrientationPatient"), 6)
    return None


def mosaic_slices(ds: Any) -> int | None:
    """NumberOfImagesInMosaic from the Siemens CSA image header, or None."""
    try:
        from nibabel.nicom import csareader

        return int(csareader.get_n_mosaic(csareader.get_csa_header(ds, "image")))
    except Exception:  # no or unreadable CSA header
        return None


def _series(study_uid: str, series_uid: str, members: list[tuple[Instance, Any]]) -> Series:
    members.sort(key=lambda m: (m[0].instance_number or 0, str(m[0].path)))
    first = members[0][1]
    series = Series(
        uid=series_uid,
        study_uid=study_uid,
        modality=str(first.get("Modality", "") or "").upper(),
        description=str(first.get("SeriesDescription", "") or ""),
        body_part=str(first.get("BodyPartExamined", "") or "").upper(),
        image_type=tuple(str(v).upper() for v in (first.get("ImageType") or [])),
        instances=[m[0] for m in members],
    )
    series.phases, series.time_key, series.time_values = split_phases(series.instances)
    return series


def _position_key(inst: Instance) -> tuple[float, ...] | None:
    return tuple(round(v, 2) for v in inst.position) if inst.position else None


def split_phases(
    instances: list[Instance],
) -> tuple[list[list[Instance]], str | None, list[float]]:
    """(time points, the attribute that separates them, its value per time point).

    Only a series whose positions repeat is split, and only by an attribute giving
    time points of equal size, each holding every position once; otherwise it stays
    one phase (and ``load_series`` refuses repeated positions)."""
    positions = [_position_key(i) for i in instances]
    if None in positions or len(set(positions)) == len(positions):
        return [instances], None, []
    for name in TEMPORAL_KEYS:
        if any(name not in i.temporal_keys for i in instances):
            continue
        groups: dict[float, list[Instance]] = defaultdict(list)
        for inst in instances:
            groups[inst.temporal_keys[name]].append(inst)
        if len(groups) < 2:
            continue
        phases = [groups[v] for v in sorted(groups)]
        sets = [{_position_key(i) for i in p} for p in phases]
        if all(len(s) == len(p) for s, p in zip(sets, phases, strict=True)) and all(
            s == sets[0] for s in sets
        ):
            return phases, name, sorted(groups)
    return [instances], None, []


def slices_in_phase(instances: list[Instance]) -> int:
    """How many slices one time point holds (frames of multi-frame/mosaic objects count)."""
    return sum(max(i.frames, 1) for i in instances if i.is_image)
