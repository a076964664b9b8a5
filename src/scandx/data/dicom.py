"""DICOM pixel data to display-space arrays, as a radiologist would view them.

Order of operations (DICOM PS3.3 C.11): stored values -> Modality LUT (Rescale
Slope/Intercept or Modality LUT Sequence) -> VOI (VOI LUT Sequence, else Window
Center/Width) -> Presentation (MONOCHROME1 is inverted). The result is float32
in [0, 1]. Colour images (RGB, YBR_*, PALETTE COLOR) come back as RGB in [0, 1].
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.uid import UID

from scandx.core.privacy import pseudonym as keyed_pseudonym
from scandx.data.checks import require_finite
from scandx.errors import BadImageError

log = logging.getLogger(__name__)


def is_dicom_file(path: Path) -> bool:
    """True when the file carries the DICM magic at byte 128 (Part 10 file)."""
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


class CappedFile:
    """A file whose ``read(n)`` never asks for more than the bytes left: pydicom reads an
    element's declared length in one call, and a mutated length of 4 GB would make
    Python allocate 4 GB for a read that returns a few bytes."""

    def __init__(self, f: Any, size: int) -> None:
        self._f, self._size = f, size

    def read(self, n: int | None = -1) -> bytes:
        left = max(self._size - self._f.tell(), 0)
        return self._f.read(left if n is None or n < 0 else min(n, left))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def read_header(path: Path, specific_tags: list[str] | None = None) -> Any:
    """The header of a DICOM file (pixel data never read), through ``CappedFile`` so a
    lying element length cannot make a read allocate more than the file holds. pydicom's
    own errors propagate (callers word them)."""
    import pydicom

    with open(path, "rb") as f, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a hostile header's every oddity is not news
        size = os.fstat(f.fileno()).st_size
        return pydicom.dcmread(
            CappedFile(f, size), stop_before_pixels=True, specific_tags=specific_tags
        )


def read_dataset(path: Path, pixels: bool = True) -> Any:
    """Open a DICOM Part 10 file; a clear BadImageError for anything else. Headers alone
    (``pixels=False``) are read through ``read_header``."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        if pixels:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(str(path))
        else:
            ds = read_header(path)
    except InvalidDicomError:
        raise BadImageError(
            "not a DICOM Part 10 file (no 'DICM' preamble / file meta header)", path
        ) from None
    except Exception as e:  # truncated headers, bad VRs, ...
        raise BadImageError(f"unreadable DICOM header ({_short(e)})", path) from None
    if pixels and "PixelData" not in ds:
        kind = ds.get("Modality", "unknown modality")
        raise BadImageError(f"DICOM object has no pixel data (Modality {kind})", path)
    return ds


def check_compressed(ds: Any, path: Path) -> None:
    """Refuse a JPEG 2000 object whose codestream structure is damaged (``j2k.py``):
    decoders fill such streams with wrong pixels without a word."""
    from scandx.data.j2k import CodestreamError, check_dicom_j2k, is_j2k

    if is_j2k(ds):
        try:
            check_dicom_j2k(ds)
        except CodestreamError as e:
            raise BadImageError(f"corrupted JPEG 2000 pixel data: {e}", path) from None
        except Exception as e:  # fragments that cannot even be split into frames
            raise BadImageError(f"corrupted JPEG 2000 pixel data ({_short(e)})", path) from None


def pixel_data_problem(ds: Any) -> str | None:
    """Why a dataset's Pixel Data cannot hold the image its header describes, or None:
    encapsulated (compressed) data without a single fragment, native data shorter than
    rows x columns x samples x bits x frames (truncated), or those attributes missing or
    not numbers. A dataset without Pixel Data has no such problem. Used wherever a file
    is accepted whole (de-identification, the hospital store), so a truncated instance
    is refused there rather than failing when someone decodes it."""
    if "PixelData" not in ds:
        return None
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    data = ds.PixelData
    if syntax and UID(syntax).is_encapsulated:
        from pydicom.encaps import generate_fragments

        if sum(1 for _ in generate_fragments(data)) < 2:  # offset table + >= 1 fragment
            return "encapsulated pixel data has no fragment"
        return None
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        bits = int(ds.BitsAllocated) * int(ds.Rows) * int(ds.Columns) * samples * frames
    except (AttributeError, TypeError, ValueError):
        return "pixel data without valid Rows, Columns and Bits Allocated"
    if len(data) * 8 < bits:
        return f"pixel data truncated ({len(data)} of {(bits + 7) // 8} bytes)"
    return None


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:160]}" if text else type(e).__name__


def _frame_value(ds: Any, seq: str, item: str, key: str) -> Any:
    """A value from the shared or first per-frame functional group (enhanced objects)."""
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        if groups in ds and len(ds[groups].value):
            grp = ds[groups].value[0]
            if seq in grp and len(grp[seq].value) and key in grp[seq].value[0]:
                return grp[seq].value[0][key].value
    return None


def modality_values(ds: Any, arr: np.ndarray) -> np.ndarray:
    """Stored values -> modality units (e.g. Hounsfield units for CT), float32."""
    from pydicom.pixels import apply_modality_lut

    if "RescaleSlope" not in ds and "ModalityLUTSequence" not in ds:
        slope = _frame_value(ds, "PixelValueTransformationSequence", "", "RescaleSlope")
        inter = _frame_value(ds, "PixelValueTransformationSequence", "", "RescaleIntercept")
        if slope is not None:
            return arr.astype(np.float32) * float(slope) + float(inter or 0.0)
        return arr.astype(np.float32)
    return np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)


def _first(value: Any) -> float:
    try:
        return float(value[0])
    except TypeError:
        return float(value)


def voi_to_unit(ds: Any, values: np.ndarray, where: str | Path = "") -> tuple[np.ndarray, str]:
    """Modality values -> [0, 1] display values, and which VOI rule was used.

    A degenerate VOI (a LUT whose entries are all equal or whose descriptor disagrees
    with its data, a window width <= 1, or one mapping every pixel of a non-constant
    image to one value) is never applied: the values are scaled min-max instead
    (rule ``minmax_bad_voi``) with a logged warning, rather than a blank image."""
    out, rule, problem = None, "minmax", None
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        problem = lut_problem(ds.VOILUTSequence[0])
        if problem is None:
            out, rule = _apply_lut(ds, values), "voi_lut"
    else:
        center = ds.get("WindowCenter")
        width = ds.get("WindowWidth")
        if center is None:
            center = _frame_value(ds, "FrameVOILUTSequence", "", "WindowCenter")
            width = _frame_value(ds, "FrameVOILUTSequence", "", "WindowWidth")
        if center is not None and width is not None:
            c, w = _first(center), _first(width)
            if not (np.isfinite(c) and np.isfinite(w) and w > 1):
                problem = f"window center {c:g} / width {w:g} (a width must be > 1)"
            else:
                out, rule = _apply_window(ds, values, c, w), "window"
    if out is not None and np.ptp(out) == 0 and np.ptp(values) > 0:
        name = "VOI LUT" if rule == "voi_lut" else "window"
        problem = f"the {name} maps every pixel to {float(out.flat[0]):.3g}"
    if problem is not None:
        name = Path(where).name if where else "DICOM"
        log.warning("%s: degenerate VOI (%s): stored values scaled min-max", name, problem)
        return robust_unit(values), "minmax_bad_voi"
    if out is None:
        return robust_unit(values), "minmax"
    return out, rule


def lut_problem(item: Any) -> str | None:
    """Why a VOI LUT Sequence item cannot be used as it stands, or None."""
    try:
        n, _first_mapped, bits = (int(v) for v in item.LUTDescriptor)
        lut = np.asarray(item.LUTData, dtype=np.float64).ravel()
    except Exception as e:  # missing or malformed descriptor/data
        return f"unreadable LUT ({_short(e)})"
    n = n or 65536
    if not 8 <= bits <= 16:
        return f"LUT Descriptor gives {bits} bits per entry (8-16 allowed)"
    if lut.size != n:
        return f"LUT Descriptor gives {n} entries, the LUT Data holds {lut.size}"
    if lut.size and (lut.min() < 0 or lut.max() > 2**bits - 1):
        return f"LUT entries outside the {bits}-bit range of the LUT Descriptor"
    if lut.size < 2 or np.ptp(lut) == 0:
        return "every LUT entry is equal"
    return None


def _apply_lut(ds: Any, values: np.ndarray) -> np.ndarray:
    from pydicom.pixels import apply_voi_lut

    bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
    out = apply_voi_lut(values.astype(np.int64), ds, index=0, prefer_lut=True)
    return np.clip(out.astype(np.float32) / float(2**bits - 1), 0, 1)


def _apply_window(ds: Any, values: np.ndarray, c: float, w: float) -> np.ndarray:
    func = str(ds.get("VOILUTFunction", "LINEAR")).upper()
    if func == "SIGMOID":
        out = 1.0 / (1.0 + np.exp(-4.0 * (values - c) / w))
    elif func == "LINEAR_EXACT":
        out = (values - c) / w + 0.5
    else:  # LINEAR, PS3.3 C.11.2.1.2.1
        out = (values - (c - 0.5)) / (w - 1.0) + 0.5
    return np.clip(out, 0, 1).astype(np.float32)


def robust_unit(values: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] between the 0.5th and 99.5th percentiles (images without a VOI)."""
    lo, hi = np.percentile(values, [0.5, 99.5])
    if hi <= lo:
        lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros_like(values, dtype=np.float32)
    return np.clip((values - lo) / (hi - lo), 0, 1).astype(np.float32)


def pseudonym(value: str) -> str:
    """A keyed pseudonym for a patient identifier: never store or log the real one."""
    return keyed_pseudonym(value, "pid")


def _little_endian(ds: Any) -> bool:
    enc = getattr(ds, "original_encoding", None)
    if enc and enc[1] is not None:
        return bool(enc[1])
    return bool(getattr(ds, "is_little_endian", True))


def apply_palette(ds: Any, arr: np.ndarray) -> np.ndarray:
    """PALETTE COLOR indices -> RGB in [0, 1] (..., 3).

    Done here rather than with pydicom's ``apply_color_lut``, which (pydicom 3.0)
    reads OW lookup tables as little endian even in big-endian files.
    """
    if "SegmentedRedPaletteColorLookupTableData" in ds:
        from pydicom.pixels import apply_color_lut

        rgb = apply_color_lut(arr, ds)
        return rgb.astype(np.float32) / float(np.iinfo(rgb.dtype).max)
    channels = []
    for colour in ("Red", "Green", "Blue"):
        n, first, bits = (int(v) for v in ds[f"{colour}PaletteColorLookupTableDescriptor"].value)
        n = n or 65536
        raw = ds[f"{colour}PaletteColorLookupTableData"].value
        if bits == 8 and len(raw) == n:
            lut = np.frombuffer(raw, dtype=np.uint8)
        else:
            lut = np.frombuffer(raw, dtype="<u2" if _little_endian(ds) else ">u2")[:n]
        index = np.clip(arr.astype(np.int64) - first, 0, n - 1)
        channels.append(lut[index].astype(np.float32) / float(2**bits - 1))
    return np.stack(channels, axis=-1)


def header_meta(ds: Any) -> dict[str, Any]:
    """Non-identifying header fields kept as manifest metadata."""
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    age = str(ds.get("PatientAge", "") or "")
    return {
        "modality": str(ds.get("Modality", "") or ""),
        "photometric": str(ds.get("PhotometricInterpretation", "") or ""),
        "sop_instance_uid": keyed_pseudonym(str(ds.SOPInstanceUID), "uid")
        if ds.get("SOPInstanceUID")
        else "",
        "patient_id": pseudonym(str(ds.PatientID)) if ds.get("PatientID") else "",
        "sex": str(ds.get("PatientSex", "") or ""),
        "age": age,
        "manufacturer": str(ds.get("Manufacturer", "") or ""),
        "spacing": _spacing(spacing),
    }


def _spacing(value: Any) -> list[float] | None:
    """Pixel spacing as two positive finite numbers, or None when the header's is unusable
    (metadata only: a damaged spacing must not make the image unreadable)."""
    try:
        many = hasattr(value, "__iter__") and not isinstance(value, str | bytes)
        values = [float(v) for v in (value if many else [value])]
    except (TypeError, ValueError):
        return None
    if len(values) != 2 or not all(np.isfinite(v) and v > 0 for v in values):
        return None
    return values


def read_dicom(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Read one DICOM file as display values in [0, 1].

    Returns ``(array, meta)``; array is (C, H, W) for single frames and
    (C, F, H, W) for multi-frame objects, C = 1 (grey) or 3 (colour).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _read_dicom(path)


def _read_dicom(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    ds = read_dataset(path)
    check_compressed(ds, path)
    try:
        arr = ds.pixel_array  # YBR -> RGB conversion is done by pydicom
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
        samples = int(ds.get("SamplesPerPixel", 1))
        if photometric == "PALETTE COLOR":
            out = apply_palette(ds, arr)
            voi, colour = "palette", True
        elif samples == 3:
            bits = int(ds.get("BitsStored", 8))
            out = arr.astype(np.float32) / float(2**bits - 1)
            voi, colour = "rgb", True
        else:
            values = require_finite(modality_values(ds, arr), path)
            out, voi = voi_to_unit(ds, values, path)
            colour = False
            if photometric == "MONOCHROME1":
                out = 1.0 - out
        out = np.clip(out, 0.0, 1.0).astype(np.float32)
    except BadImageError:
        raise
    except Exception as e:  # truncated pixel data, undecodable streams, ...
        raise BadImageError(f"cannot decode pixel data ({_short(e)})", path) from None
    if colour:
        out = np.moveaxis(out, -1, 0)  # (..., 3) -> (3, ...)
    else:
        out = out[None]
    meta = header_meta(ds)
    meta.update({"voi": voi, "frames": frames, "format": "dicom"})
    if frames == 1 and out.ndim == 4:
        out = out[:, 0]
    return np.ascontiguousarray(out), meta
