"""What a DICOM folder holds once grouped: studies, series, instances, and a loaded volume.

UIDs are kept (the caller needs them to reference the source in results) but never
shown: errors and logs name a series by ``ref``, a keyed pseudonym (``uid-<hex>``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scandx.core.privacy import pseudonym

# objects that carry no image to predict on (reports, segmentations, presentation
# states, key-object selections, RT plans/structures, waveforms, encapsulated documents)
NON_IMAGE_MODALITIES = frozenset(
    {"SR", "SEG", "PR", "KO", "RTSTRUCT", "RTPLAN", "RTRECORD", "REG", "DOC", "ECG", "HD", "AU"}
)


def uid_ref(uid: str) -> str:
    """The keyed pseudonym that names a study or series in errors and logs."""
    return pseudonym(uid, "uid")


@dataclass(frozen=True)
class Instance:
    """One DICOM file's header facts (read without pixel data)."""

    path: Path
    sop_instance_uid: str
    sop_class_uid: str
    modality: str
    rows: int
    columns: int
    frames: int  # NumberOfFrames (1 for single-frame objects)
    samples_per_pixel: int
    orientation: tuple[float, ...] | None  # ImageOrientationPatient (6), or None
    position: tuple[float, ...] | None  # ImagePositionPatient (3), or None
    pixel_spacing: tuple[float, float] | None
    instance_number: int | None
    temporal_keys: dict[str, float]  # TemporalPositionIdentifier, TriggerTime, ... present
    mosaic: bool  # Siemens mosaic (ImageType holds MOSAIC)
    enhanced: bool  # per-frame functional groups

    @property
    def is_image(self) -> bool:
        return self.rows > 0 and self.columns > 0 and self.modality not in NON_IMAGE_MODALITIES


@dataclass
class Series:
    """One Series Instance UID. ``phases`` splits its instances by time point (temporal
    position, trigger time, acquisition, echo) when slice positions repeat: a 4D series
    has several phases of the same positions, a 3D or 2D series one phase."""

    uid: str
    study_uid: str
    modality: str
    description: str
    body_part: str
    image_type: tuple[str, ...]
    instances: list[Instance]
    phases: list[list[Instance]] = field(default_factory=list)
    time_key: str | None = None  # the attribute that separates the phases
    time_values: list[float] = field(default_factory=list)

    @property
    def ref(self) -> str:
        return uid_ref(self.uid)

    @property
    def is_image(self) -> bool:
        return any(i.is_image for i in self.instances)

    @property
    def rows(self) -> int:
        return max((i.rows for i in self.instances), default=0)

    @property
    def columns(self) -> int:
        return max((i.columns for i in self.instances), default=0)

    @property
    def n_slices(self) -> int:
        """Slices of one time point (multi-frame and mosaic objects count their frames)."""
        from scandx.data.series.grouping import slices_in_phase

        return slices_in_phase(self.phases[0] if self.phases else self.instances)

    @property
    def orientation(self) -> str:
        """``axial``, ``coronal``, ``sagittal``, ``oblique`` (the normal's largest
        component is below 0.8) or ``unknown`` (no orientation)."""
        iop = next((i.orientation for i in self.instances if i.orientation), None)
        return orientation_name(iop)


@dataclass
class Study:
    uid: str
    series: list[Series]  # image series
    others: list[Series]  # non-image objects (SR, SEG, PR, KO, RT...), kept apart

    @property
    def ref(self) -> str:
        return uid_ref(self.uid)


@dataclass
class Volume:
    """A series as voxels. ``array`` is (Z, Y, X), or (T, Z, Y, X) with a time axis, in
    modality units (CT in HU); ``affine`` maps an index (z, y, x) to RAS millimetres;
    ``slice_uids[t][z]`` (and ``frame_numbers[t][z]``, 1-based within a multi-frame
    object) say where each slice came from. ``notes`` record every correction made
    (resampling, tilt); ``has_geometry`` is False for images without patient position
    (projection radiographs, cine loops), whose affine only carries the pixel spacing."""

    array: np.ndarray
    spacing: tuple[float, float, float]  # (z, y, x) mm
    affine: np.ndarray
    slice_uids: list[list[str]]
    frame_numbers: list[list[int]]
    series_ref: str
    time_key: str | None = None
    time_values: list[float] = field(default_factory=list)
    has_geometry: bool = True
    notes: list[str] = field(default_factory=list)

    @property
    def sop_uids(self) -> list[str]:
        """SOP Instance UIDs by slice of the first time point."""
        return self.slice_uids[0]

    @property
    def is_4d(self) -> bool:
        return self.array.ndim == 4


def orientation_name(iop: tuple[float, ...] | None) -> str:
    if not iop or len(iop) != 6:
        return "unknown"
    normal = np.abs(np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float)))
    axis = int(np.argmax(normal))
    if normal[axis] < 0.8:
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]
