"""One DICOM file -> one catalog row, from its header alone (pixel data is never read).

``read_row`` opens the file once, parses the data set up to the Pixel Data element
(pydicom ``stop_before_pixels``) with only the attributes the catalog keeps
(``specific_tags``: other elements are skipped by seeking, not read) and with every
value longer than ``DEFER_BYTES`` left unread, so an element whose length field lies
(claims gigabytes) cannot make the reader allocate it. Then it reads the Pixel Data
element's own 8-12 byte header and checks that the file holds as many bytes as that
element claims (a defined length), or ends with the sequence delimiter of
encapsulated pixel data: a file cut short in its pixel data is a failure, not a row.

The patient appears only as ``patient`` = the keyed pseudonym (``core/privacy.py``)
of PatientID; the name, ID, birth date and accession number are never read.
"""

from __future__ import annotations

import datetime as dt
import struct
import warnings
from pathlib import Path
from typing import Any, BinaryIO

from scandx.data.dicom import pseudonym

DEFER_BYTES = 64 * 1024  # values longer than this are skipped, never allocated
PIXEL_DATA = 0x7FE00010
MEDIA_DIRECTORY = "1.2.840.10008.1.3.10"
DEFLATED = "1.2.840.10008.1.2.1.99"
MAX_FRAGMENTS = 100_000  # encapsulated fragments walked when checking a file's extent

TEXT = {  # column -> DICOM keyword
    "study_instance_uid": "StudyInstanceUID",
    "series_instance_uid": "SeriesInstanceUID",
    "sop_instance_uid": "SOPInstanceUID",
    "sop_class_uid": "SOPClassUID",
    "modality": "Modality",
    "body_part": "BodyPartExamined",
    "series_description": "SeriesDescription",
    "manufacturer": "Manufacturer",
    "model": "ManufacturerModelName",
    "photometric_interpretation": "PhotometricInterpretation",
    "acquisition_number": "AcquisitionNumber",
    "echo_numbers": "EchoNumbers",
    "temporal_position": "TemporalPositionIdentifier",
    "trigger_time": "TriggerTime",
}
DATES = {
    "study_date": "StudyDate",
    "series_date": "SeriesDate",
    "acquisition_date": "AcquisitionDate",
}
INTEGERS = {
    "rows": "Rows",
    "columns": "Columns",
    "number_of_frames": "NumberOfFrames",
    "bits_stored": "BitsStored",
    "series_number": "SeriesNumber",
    "instance_number": "InstanceNumber",
}
FLOATS = {"slice_thickness": "SliceThickness"}
VECTORS = {"image_position": "ImagePositionPatient", "image_orientation": "ImageOrientationPatient"}
# read for the row but never stored as such
OTHER_KEYWORDS = ("PatientID", "PixelSpacing", "ImagerPixelSpacing")
KEYWORDS = [
    *TEXT.values(),
    *DATES.values(),
    *INTEGERS.values(),
    *FLOATS.values(),
    *VECTORS.values(),
    *OTHER_KEYWORDS,
]


ASCII_VRS = frozenset({"UI", "CS", "DA", "IS", "DS", "TM", "AS", "DT"})
TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UC"})  # ASCII bytes decode alike in any charset


def _tags() -> dict[str, int]:
    from pydicom.datadict import tag_for_keyword

    return {k: int(tag_for_keyword(k)) for k in KEYWORDS}  # type: ignore[arg-type]


def dictionary_vr(tag: int) -> str:
    from pydicom.datadict import dictionary_VR

    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return ""


TAGS = _tags()


class HeaderProblem(Exception):
    """Why one file gives no catalog row (the failures table's reason)."""


def read_row(path: Path, relative: str, size: int, mtime_ns: int) -> dict[str, Any]:
    """The catalog row of one DICOM file; HeaderProblem naming the reason otherwise."""
    if size == 0:
        raise HeaderProblem("zero-byte file")
    try:
        with open(path, "rb") as fp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = _parse(fp)
            _check_pixel_extent(fp, ds, size)
            row = header_values(ds)
    except HeaderProblem:
        raise
    except OSError as e:
        raise HeaderProblem(f"cannot read ({e.strerror or e})") from None
    row.update({"path": relative, "file_size": size, "mtime_ns": mtime_ns})
    return row


def _parse(fp: BinaryIO) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(
            fp, stop_before_pixels=True, defer_size=DEFER_BYTES, specific_tags=list(TAGS.values())
        )
    except InvalidDicomError:
        raise HeaderProblem(
            "not a DICOM Part 10 file (no 'DICM' preamble / file meta header)"
        ) from None
    except Exception as e:  # truncated headers, bad VRs, lying lengths
        raise HeaderProblem(f"unreadable DICOM header ({_short(e)})") from None
    if not ds.get("SOPInstanceUID"):
        meta = getattr(ds, "file_meta", {})
        if str(meta.get("MediaStorageSOPClassUID", "")) == MEDIA_DIRECTORY:
            raise HeaderProblem("a DICOMDIR (media directory), not an instance")
        if fp.read(1) == b"":
            raise HeaderProblem("no SOP Instance UID before the end of the file (truncated?)")
        raise HeaderProblem("DICOM header has no SOP Instance UID")
    return ds


def _check_pixel_extent(fp: BinaryIO, ds: Any, size: int) -> None:
    """Refuse a file that ends before the Pixel Data its header announces."""
    syntax = str(getattr(ds, "file_meta", {}).get("TransferSyntaxUID", ""))
    if syntax == DEFLATED:
        return  # parsed from an inflated copy: file offsets do not apply
    start = fp.tell()  # stop_before_pixels leaves the file at the Pixel Data tag
    head = fp.read(12)
    if len(head) < 8:
        if "Rows" in ds and not head:
            raise HeaderProblem(
                "truncated file: an image header, and the file ends before its Pixel Data"
            )
        return  # no pixel data element: nothing to check
    _implicit, little = ds.original_encoding  # as the data set was actually read
    order = "<" if little else ">"
    group, element = struct.unpack(order + "HH", head[:4])
    if (group << 16 | element) != PIXEL_DATA:
        return  # stopped elsewhere (end of data set)
    if not head[4:6].isalpha():  # implicit VR (some files switch against their syntax)
        length, value_at = struct.unpack(order + "L", head[4:8])[0], start + 8
    elif len(head) == 12:
        length, value_at = struct.unpack(order + "L", head[8:12])[0], start + 12
    else:
        raise HeaderProblem("truncated file: ends inside the Pixel Data element header")
    if length == 0xFFFFFFFF:
        _check_fragments(fp, value_at, size, order)
    elif value_at + length > size:
        raise HeaderProblem(
            f"truncated file: Pixel Data claims {length} bytes, the file holds "
            f"{max(size - value_at, 0)} after its header"
        )


def _check_fragments(fp: BinaryIO, at: int, size: int, order: str) -> None:
    """Encapsulated Pixel Data: walk the item headers (seeking past each fragment) to
    the sequence delimiter; a fragment running past the end, or no delimiter, is a
    truncated file."""
    for _ in range(MAX_FRAGMENTS):
        fp.seek(at)
        head = fp.read(8)
        if len(head) < 8:
            break
        group, element, length = struct.unpack(order + "HHL", head)
        if (group, element) == (0xFFFE, 0xE0DD):
            return
        if (group, element) != (0xFFFE, 0xE000):
            raise HeaderProblem("encapsulated Pixel Data holds something other than items")
        at += 8 + length
        if at > size:
            raise HeaderProblem(
                f"truncated file: a Pixel Data fragment ends {at - size} bytes past the end"
            )
    else:
        return  # more fragments than we walk: not checked further
    raise HeaderProblem("truncated file: encapsulated Pixel Data has no sequence delimiter")


def header_values(ds: Any) -> dict[str, Any]:
    """The catalog columns of one parsed header (unusable values become null)."""
    row: dict[str, Any] = {c: _text(ds, k) for c, k in TEXT.items()}
    row.update({c: _date(ds, k) for c, k in DATES.items()})
    row.update({c: _integer(ds, k) for c, k in INTEGERS.items()})
    row.update({c: _float(ds, k) for c, k in FLOATS.items()})
    row.update({c: _vector(ds, k) for c, k in VECTORS.items()})
    spacing = _vector(ds, "PixelSpacing") or _vector(ds, "ImagerPixelSpacing")
    pair = spacing if spacing and len(spacing) == 2 else None
    row["pixel_spacing_row"] = pair[0] if pair else None
    row["pixel_spacing_column"] = pair[1] if pair else None
    if row["number_of_frames"] is None and row["rows"] is not None:
        row["number_of_frames"] = 1
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    row["transfer_syntax_uid"] = str(syntax) if syntax else None
    patient = _text(ds, "PatientID")
    row["patient"] = pseudonym(patient) if patient else None
    return row


def _value(ds: Any, keyword: str) -> Any:
    """An element's value: text VRs decoded from the raw bytes directly (multi-values as
    a list of strings), US as an int; anything else through pydicom's conversion."""
    tag = TAGS[keyword]
    try:
        element = ds.get_item(tag)  # the raw element, not converted
    except Exception:  # a damaged element
        return None
    if element is None:
        return None
    raw = getattr(element, "value", None)
    if getattr(element, "is_raw", False) and isinstance(raw, bytes):
        vr = element.VR or dictionary_vr(tag)
        if vr in ASCII_VRS or (vr in TEXT_VRS and raw.isascii()):
            parts = raw.decode("ascii", "replace").strip(" \0").split("\\")
            return parts[0] if len(parts) == 1 else parts
        if vr == "US" and len(raw) >= 2:
            return int.from_bytes(raw[:2], "little" if element.is_little_endian else "big")
    elif getattr(element, "is_raw", False):
        return None  # deferred: longer than DEFER_BYTES
    try:
        return ds[tag].value
    except Exception:  # a value that does not parse under its VR
        return None


def _text(ds: Any, keyword: str) -> str | None:
    value = _value(ds, keyword)
    if value is None or isinstance(value, bytes):
        return None
    if hasattr(value, "__iter__") and not isinstance(value, str):
        value = "\\".join(str(v) for v in value)
    text = " ".join(str(value).split())
    return text or None


def _date(ds: Any, keyword: str) -> dt.date | None:
    text = _text(ds, keyword)
    try:
        return dt.datetime.strptime(text[:8], "%Y%m%d").date() if text else None
    except ValueError:
        return None


def _integer(ds: Any, keyword: str) -> int | None:
    value = _value(ds, keyword)
    try:
        number = int(
            value[0] if hasattr(value, "__getitem__") and not isinstance(value, str) else value
        )  # type: ignore[index]
    except (TypeError, ValueError, IndexError):
        return None
    return number if -(2**31) <= number < 2**31 else None


def _float(ds: Any, keyword: str) -> float | None:
    try:
        number = float(_value(ds, keyword))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def _vector(ds: Any, keyword: str) -> list[float] | None:
    value = _value(ds, keyword)
    if isinstance(value, str):
        value = [value]
    if value is None or isinstance(value, bytes):
        return None
    try:
        numbers = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    return numbers if numbers and all(abs(v) != float("inf") and v == v for v in numbers) else None


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:160]}" if text else type(e).__name__
