"""Small synthetic DICOM series written with pydicom (one file per slice)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def write_slices(
    folder: Path,
    slices: list[np.ndarray],
    positions: list[tuple[float, float, float]],
    orientation: tuple[float, ...] | list[tuple[float, ...]] = AXIAL,
    spacing: tuple[float, float] = (0.8, 0.7),
    extra: list[dict] | None = None,
    series_uid: str | None = None,
    study_uid: str | None = None,
    modality: str = "CT",
    description: str = "",
) -> list[str]:
    """Write one CT file per slice (stored = pixels + 1024, rescaled back to ``pixels``);
    returns the SOP UIDs."""
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    uids = []
    for k, (pixels, position) in enumerate(zip(slices, positions, strict=True)):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.FrameOfReferenceUID = generate_uid()
        ds.PatientID, ds.Modality, ds.SeriesDescription = "SYN", modality, description
        ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        iop = orientation[k] if isinstance(orientation, list) else orientation
        ds.ImageOrientationPatient = [float(v) for v in iop]
        ds.ImagePositionPatient = [float(v) for v in position]
        ds.PixelSpacing, ds.SliceThickness = list(spacing), 1.0
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = -1024.0, 1.0
        for key, value in (extra[k] if extra else {}).items():
            setattr(ds, key, value)
        ds.PixelData = (pixels + 1024).astype(np.int16).tobytes()
        ds.save_as(folder / f"im{k:03d}_{uids.__len__()}.dcm", enforce_file_format=True)
        uids.append(ds.SOPInstanceUID)
    return uids


def axial_positions(n: int, dz: float = 2.0, z0: float = 10.0) -> list[tuple[float, float, float]]:
    return [(-20.0, -30.0, z0 + dz * k) for k in range(n)]
