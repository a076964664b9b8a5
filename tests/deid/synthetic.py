"""A DICOM file with a marker value in every attribute Table E.1-1 lists (at the top
level and again inside an item of a sequence the table does not list)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from scandx.deid.table import load_table

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
NESTING_SEQUENCE = "AnatomicRegionSequence"  # (0008,2218): not in the table, walked
TEXT_VRS = {"AE", "CS", "LO", "LT", "SH", "ST", "UC", "UT"}


def listed_tags() -> list[tuple[int, str]]:
    """(tag, VR) of every exact-tag row, groups 0000 and 0002 left out (command and file
    meta groups cannot sit in a dataset; the file meta is rebuilt and checked apart)."""
    out = []
    for tag in sorted(load_table().rules):
        if tag >> 16 in (0x0000, 0x0002):
            continue
        out.append((tag, dictionary_VR(tag)))
    return out


def marker(tag: int, vr: str, nested: bool) -> object:
    """A value of the right VR that appears nowhere else (text markers are greppable)."""
    n = (tag * 7 + (1 if nested else 0)) % 100_000
    mark = f"MK{'N' if nested else 'T'}{n:05d}"
    if vr in TEXT_VRS:
        return mark
    if vr == "PN":
        return f"{mark}^PN"
    if vr == "UI":
        return f"1.2.826.0.1.3680043.10.999.{1 if nested else 0}.{tag}"
    if vr == "DA":
        return "19770412"
    if vr == "TM":
        return "112233.4455"
    if vr == "DT":
        return "19770412112233"
    if vr == "AS":
        return "077W"
    if vr == "IS":
        return "2077177117"
    if vr == "DS":
        return "7.17e+71"
    if vr == "UR":
        return f"http://{mark.lower()}.example"
    if vr in ("US", "SS", "UL", "SL"):
        return 7717
    if vr in ("FL", "FD"):
        return 7.25
    if vr in ("OB", "UN", "OW"):
        return (mark + "B").encode()
    if vr == "SQ":
        item = Dataset()
        item.ReferencedSOPClassUID = CT_IMAGE
        item.ReferencedSOPInstanceUID = f"1.2.826.0.1.3680043.10.998.{1 if nested else 0}.{tag}"
        item.TextValue = mark + "SQ"
        return [item]
    raise ValueError(f"no marker for VR {vr}")


def text_markers(value: object) -> list[bytes]:
    """The byte strings of a marker that must not appear in an output."""
    if isinstance(value, bytes):
        return [value]
    if isinstance(value, list):
        item = value[0]
        return [str(item.ReferencedSOPInstanceUID).encode(), str(item.TextValue).encode()]
    if isinstance(value, str) and value not in ("19770412",):  # dates checked per action
        return [value.split("^")[0].encode()]
    return []


def make_file(path: Path, patient_id: str = "MKPATIENT01", seed: int = 0) -> Dataset:
    """Every listed attribute with its marker, twice (top level, nested); pixel data."""
    ds = Dataset()
    nested = Dataset()
    for tag, vr in listed_tags():
        ds.add_new(tag, vr, marker(tag, vr, False))
        nested.add_new(tag, vr, marker(tag, vr, True))
    setattr(ds, NESTING_SEQUENCE, [nested])
    ds.SOPClassUID = CT_IMAGE
    ds.SOPInstanceUID = f"1.2.826.0.1.3680043.10.997.{seed}"  # one per file
    ds.PatientID = patient_id
    ds.PatientName = "Markerson^Marka"
    ds.StudyDescription = f"follow-up of Markerson {patient_id}"
    ds.Modality = "CT"
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 16, 12, 11
    ds.PixelRepresentation = 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    pixels = np.random.default_rng(seed).integers(0, 4096, (8, 8), dtype=np.uint16)
    ds.PixelData = pixels.tobytes()
    ds.add_new(0x00990010, "LO", "MKPRIVATE CREATOR")
    ds.add_new(0x00991001, "LO", "MKPRIVATEVALUE")
    ds.add_new(0x60000010, "US", 8)  # an overlay plane: its group goes with its data
    ds.add_new(0x60003000, "OW", b"MKOVERLAY" + b"\0" * 7)
    ds.add_new(0x50000005, "US", 1)  # curve data (retired): group 50xx goes
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CT_IMAGE
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.SourceApplicationEntityTitle = "MKSOURCEAE"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return ds
