"""One DICOM instance -> its 2D frames in modality units, each with its own geometry.

Single-frame images give one frame; enhanced multi-frame objects one per frame, placed
by their per-frame functional groups (Plane Position / Plane Orientation / Pixel
Measures / Pixel Value Transformation / Frame Content); a Siemens mosaic is unpacked
into its slices by nibabel's DICOM wrapper (which also corrects the mosaic's position);
a legacy multi-frame object is placed by its Grid Frame Offset Vector (RT dose), else
its frames carry no position.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from scandx.data.checks import require_finite
from scandx.data.dicom import check_compressed, modality_values, read_dataset
from scandx.data.series.model import Instance
from scandx.errors import BadImageError, ScandxError


@dataclass
class Frame:
    pixels: np.ndarray  # (rows, columns) float32, modality units
    position: np.ndarray | None  # ImagePositionPatient (LPS mm) of pixel (0, 0)
    orientation: np.ndarray | None  # ImageOrientationPatient: row direction, column direction
    spacing: tuple[float, float] | None  # (between rows, between columns) mm
    thickness: float | None
    sop_uid: str
    frame_number: int  # 1-based within its instance
    time_index: float | None = None  # a per-frame temporal index (enhanced objects)


def instance_frames(inst: Instance, where: str) -> list[Frame]:
    """The frames of one instance; a ScandxError naming ``where`` (the series) and the
    file when its pixels cannot be used."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = read_dataset(inst.path)
        check_compressed(ds, inst.path)
        if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
            raise ScandxError(
                f"{where}: colour ({ds.get('PhotometricInterpretation', '')}) images are not "
                "a volume in modality units; read them one by one as images",
                inst.path,
            )
        try:
            if inst.mosaic:
                return _mosaic(ds, inst)
            arr = ds.pixel_array
        except BadImageError:
            raise
        except Exception as e:  # undecodable or truncated pixel data
            raise BadImageError(
                f"{where}: cannot decode pixel data ({type(e).__name__})", inst.path
            ) from None
        if inst.enhanced:
            return _enhanced(ds, inst, arr)
        return _plain(ds, inst, arr)


def _floats(value: Any) -> np.ndarray | None:
    try:
        out = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out).all() else None


def _spacing(value: Any) -> tuple[float, float] | None:
    v = _floats(value) if value is not None else None
    if v is None or v.size != 2 or (v <= 0).any():
        return None
    return float(v[0]), float(v[1])


def _thickness(ds: Any) -> float | None:
    for name in ("SpacingBetweenSlices", "SliceThickness"):
        try:
            value = float(ds.get(name) or 0)
        except (TypeError, ValueError):
            continue
        if value > 0:
            return value
    return None


def _plain(ds: Any, inst: Instance, arr: np.ndarray) -> list[Frame]:
    values = require_finite(modality_values(ds, arr), inst.path)
    if "DoseGridScaling" in ds:  # RT dose: stored values x scaling = Gy
        values = values * np.float32(float(ds.DoseGridScaling))
    stack = values if values.ndim == 3 else values[None]
    iop = _floats(ds.get("ImageOrientationPatient") or [])
    ipp = _floats(ds.get("ImagePositionPatient") or [])
    iop = iop if iop is not None and iop.size == 6 else None
    ipp = ipp if ipp is not None and ipp.size == 3 else None
    spacing = _spacing(ds.get("PixelSpacing"))
    positions: list[np.ndarray | None] = [ipp] * len(stack)
    if len(stack) > 1:
        offsets = _floats(ds.get("GridFrameOffsetVector") or [])
        if (
            iop is not None
            and ipp is not None
            and offsets is not None
            and offsets.size == len(stack)
        ):
            normal = np.cross(iop[:3], iop[3:])
            positions = [ipp + o * normal for o in offsets]
        else:  # frames without a position of their own (cine loops, legacy multi-frame)
            positions = [None] * len(stack)
    return [
        Frame(
            stack[k].astype(np.float32),
            positions[k],
            iop,
            spacing,
            _thickness(ds),
            inst.sop_instance_uid,
            k + 1,
        )
        for k in range(len(stack))
    ]


def _group_value(groups: list[Any], seq: str, key: str) -> Any:
    """``key`` of the first item of ``seq`` in the first of ``groups`` that has it."""
    for group in groups:
        if group is not None and seq in group and len(group[seq].value):
            item = group[seq].value[0]
            if key in item:
                return item[key].value
    return None


def _enhanced(ds: Any, inst: Instance, arr: np.ndarray) -> list[Frame]:
    per_frame = list(ds.PerFrameFunctionalGroupsSequence)
    shared = (
        ds.SharedFunctionalGroupsSequence[0] if ds.get("SharedFunctionalGroupsSequence") else None
    )
    stack = arr if arr.ndim == 3 else arr[None]
    if len(per_frame) != len(stack):
        raise ScandxError(
            f"{len(per_frame)} per-frame functional groups for {len(stack)} frames", inst.path
        )
    frames = []
    for k, group in enumerate(per_frame):
        groups = [group, shared]
        slope = _group_value(groups, "PixelValueTransformationSequence", "RescaleSlope")
        intercept = _group_value(groups, "PixelValueTransformationSequence", "RescaleIntercept")
        values = stack[k].astype(np.float32)
        if slope is not None:
            values = values * np.float32(float(slope)) + np.float32(float(intercept or 0.0))
        elif "RescaleSlope" in ds:
            values = values * np.float32(float(ds.RescaleSlope)) + np.float32(
                float(ds.get("RescaleIntercept", 0) or 0)
            )
        ipp = _floats(_group_value(groups, "PlanePositionSequence", "ImagePositionPatient") or [])
        iop = _floats(
            _group_value(groups, "PlaneOrientationSequence", "ImageOrientationPatient") or []
        )
        thickness = _group_value(groups, "PixelMeasuresSequence", "SpacingBetweenSlices")
        thickness = thickness or _group_value(groups, "PixelMeasuresSequence", "SliceThickness")
        time_index = _group_value(groups, "FrameContentSequence", "TemporalPositionIndex")
        frames.append(
            Frame(
                require_finite(values, inst.path),
                ipp if ipp is not None and ipp.size == 3 else None,
                iop if iop is not None and iop.size == 6 else None,
                _spacing(_group_value(groups, "PixelMeasuresSequence", "PixelSpacing")),
                float(thickness) if thickness else None,
                inst.sop_instance_uid,
                k + 1,
                float(time_index) if time_index is not None else None,
            )
        )
    return frames


def _mosaic(ds: Any, inst: Instance) -> list[Frame]:
    from nibabel.nicom.dicomwrappers import MosaicWrapper, wrapper_from_data

    wrapper = wrapper_from_data(ds)
    if not isinstance(wrapper, MosaicWrapper):
        raise ScandxError(
            "ImageType says MOSAIC but the Siemens CSA header gives no slice count", inst.path
        )
    data = np.asarray(wrapper.get_data(), dtype=np.float32)  # (rows, columns, slices), scaled
    origin = np.asarray(wrapper.image_position, dtype=np.float64)  # slice 0, mosaic shift undone
    normal = np.asarray(wrapper.slice_normal, dtype=np.float64)
    step = float(wrapper.voxel_sizes[2])
    iop = _floats(ds.ImageOrientationPatient)
    spacing = _spacing(ds.get("PixelSpacing"))
    return [
        Frame(
            require_finite(np.ascontiguousarray(data[:, :, k]), inst.path),
            origin + k * step * normal,
            iop,
            spacing,
            step,
            inst.sop_instance_uid,
            k + 1,
        )
        for k in range(data.shape[2])
    ]
