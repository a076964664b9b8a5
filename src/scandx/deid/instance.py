"""One file in, one de-identified instance out (or the reason it was refused)."""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID

import scandx
from scandx.data.dicom import pixel_data_problem
from scandx.deid import keyed
from scandx.deid.profile import InstanceContext, deidentify_dataset
from scandx.deid.table import Table, load_table
from scandx.errors import BadImageError

log = logging.getLogger(__name__)

# PS3.16 CID 7050 (De-identification Method), scheme DCM
METHOD_CODES = {
    "basic": ("113100", "Basic Application Confidentiality Profile"),
    "clean_descriptors": ("113105", "Clean Descriptors Option"),
    "modified_dates": ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    "safe_private": ("113111", "Retain Safe Private Option"),
}
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
BURNED_IN_MODALITIES = {"US", "SC", "OT", "XC"}
# identifiers scrubbed from kept descriptors (Clean Descriptors), besides every name
ID_KEYWORDS = ("PatientID", "OtherPatientIDs", "AccessionNumber", "PatientBirthDate")


@dataclass
class Instance:
    """A de-identified dataset and what the mapping files and summary need of it."""

    dataset: Dataset
    patient_id: str
    uids: dict[str, str]
    actions: dict[str, int]
    burned_in: str | None  # why the pixels may show text, or None
    kept_private: int = 0
    notes: list[str] = field(default_factory=list)


def read_instance(path: Path) -> Dataset:
    """The dataset of ``path``, fully parsed, or BadImageError with the reason."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = _read(path)
    if any("End of file reached before delimiter" in str(w.message) for w in caught):
        raise BadImageError("truncated (ends inside its encapsulated Pixel Data)", path)
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if syntax and not UID(syntax).is_transfer_syntax:
        raise BadImageError("unknown transfer syntax (not one of PS3.5 / PS3.6)", path)
    for keyword in ("SOPClassUID", "SOPInstanceUID"):
        if not str(ds.get(keyword, "") or "").strip():
            raise BadImageError(f"not a DICOM instance (no {keyword})", path)
    problem = pixel_data_problem(ds)
    if problem:
        raise BadImageError(problem, path)
    return ds


def _read(path: Path) -> Dataset:
    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError:
        try:  # a DICOM dataset without the Part 10 header (no preamble / meta)
            ds = pydicom.dcmread(path, force=True)
        except Exception as e:
            raise BadImageError(f"not DICOM ({type(e).__name__})", path) from None
        if "SOPClassUID" not in ds:
            raise BadImageError(
                "not a DICOM file (no DICM header, no SOP Class UID)", path
            ) from None
    except Exception as e:
        raise BadImageError(f"unreadable DICOM ({type(e).__name__})", path) from None
    try:
        for elem in ds.iterall():  # parse every element now, not while writing
            _ = elem.value
    except Exception as e:
        raise BadImageError(f"damaged DICOM dataset ({type(e).__name__})", path) from None
    return ds


def deidentify_instance(ds: Dataset, table: Table, options: frozenset[str]) -> Instance:
    """``ds`` de-identified in place, with its patient id, UID remap and action counts."""
    patient_id = str(ds.get("PatientID", "") or "").strip()
    ctx = InstanceContext(
        table=table,
        options=options,
        patient_pseudonym=keyed.patient_pseudonym(patient_id),
        shift_days=keyed.date_shift_days(patient_id),
        scrub=_scrub_pattern(ds) if "clean_descriptors" in options else None,
    )
    burned_in = _burned_in(ds)
    deidentify_dataset(ds, ctx)
    if "PatientName" not in ds:  # Type 2 in every patient module: the pseudonym
        ds.PatientName = ctx.patient_pseudonym
    if "PatientID" not in ds:
        ds.PatientID = ctx.patient_pseudonym
    _mark(ds, options, ctx.kept_private > 0)
    _rebuild_meta(ds)
    return Instance(ds, patient_id, ctx.uids, ctx.actions, burned_in, ctx.kept_private)


def _burned_in(ds: Dataset) -> str | None:
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        return "Burned In Annotation is YES"
    modality = str(ds.get("Modality", "")).upper()
    if modality in BURNED_IN_MODALITIES:
        return f"modality {modality} often carries burned-in text"
    if str(ds.get("SOPClassUID", "")).startswith(SECONDARY_CAPTURE):
        return "a Secondary Capture often carries burned-in text"
    return None


def _scrub_pattern(ds: Dataset) -> re.Pattern | None:
    """Every person name (each component) and the patient's identifiers in ``ds``, as
    one case-insensitive pattern: what Clean Descriptors removes from kept text."""
    words: set[str] = set()
    for elem in ds.iterall():
        if elem.VR == "PN" and not elem.is_empty:
            for value in elem.value if elem.VM > 1 else [elem.value]:
                words.update(p for p in re.split(r"[\^= ,]+", str(value)) if len(p) >= 2)
        elif elem.keyword in ID_KEYWORDS and not elem.is_empty:
            for value in elem.value if elem.VM > 1 else [elem.value]:
                if len(str(value).strip()) >= 2:
                    words.add(str(value).strip())
    if not words:
        return None
    alternatives = sorted((re.escape(w) for w in words), key=len, reverse=True)
    return re.compile(r"(?<![A-Za-z0-9])(?:" + "|".join(alternatives) + r")(?![A-Za-z0-9])", re.I)


def _mark(ds: Dataset, options: frozenset[str], kept_private: bool) -> None:
    """Patient Identity Removed, De-identification Method (Code Sequence), Longitudinal
    Temporal Information Modified (PS3.3 C.7.1.1, C.7.6.1)."""
    used = ["basic", *sorted(options), *(["safe_private"] if kept_private else [])]
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = [
        f"scandx {scandx.__version__}: PS3.15 {load_table().edition} Table E.1-1",
        *(METHOD_CODES[o][1][:64] for o in used),
    ]
    items = []
    for option in used:
        item = Dataset()
        item.CodeValue, item.CodeMeaning = METHOD_CODES[option]
        item.CodingSchemeDesignator = "DCM"
        items.append(item)
    ds.DeidentificationMethodCodeSequence = items
    ds.LongitudinalTemporalInformationModified = (
        "MODIFIED" if "modified_dates" in options else "REMOVED"
    )


def _rebuild_meta(ds: Dataset) -> None:
    """File meta of the output: the new SOP Instance UID, the input's transfer syntax,
    nothing from the source application (its AE title may name the sending station)."""
    old = getattr(ds, "file_meta", None) or FileMetaDataset()
    syntax = old.get("TransferSyntaxUID")
    if not syntax:
        syntax = _syntax_read(ds)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = syntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"SCANDX_{scandx.__version__}"[:16]
    ds.file_meta = meta


def _syntax_read(ds: Dataset) -> str:
    implicit, little = ds.original_encoding
    if implicit:
        return "1.2.840.10008.1.2"
    return "1.2.840.10008.1.2.1" if little else "1.2.840.10008.1.2.2"
