"""Synthetic segmentation data with known masks, written in the layouts users have.

- ``make_ellipse_folders``: 2D paired folders (``images/*.png``, ``masks/*.png`` 0/255).
- ``make_ellipsoid_decathlon``: 3D NIfTI in the Decathlon layout (``dataset.json``,
  ``imagesTr/<case>_0000.nii.gz``, ``labelsTr/<case>.nii.gz``, ``imagesTs/``), with
  an anisotropic voxel spacing so that spacing handling is exercised.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _ellipsoid(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    grids = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    centre = [rng.uniform(0.35, 0.65) * s for s in shape]
    radii = [rng.uniform(0.15, 0.28) * s for s in shape]
    r2 = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii, strict=True))
    return r2 <= 1.0


def _image(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    img = 0.3 + 0.4 * mask + rng.normal(0, 0.1, mask.shape)
    return np.clip(img, 0, 1).astype(np.float32)


def make_ellipse_folders(out: str | Path, n: int = 24, size: int = 64, seed: int = 0) -> Path:
    from PIL import Image

    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        mask = _ellipsoid(rng, (size, size))
        img = _image(rng, mask)
        Image.fromarray(np.round(img * 255).astype(np.uint8)).save(out / "images" / f"c{i:03d}.png")
        Image.fromarray((mask * 255).astype(np.uint8)).save(out / "masks" / f"c{i:03d}.png")
    return out


def make_ellipsoid_decathlon(
    out: str | Path,
    n_train: int = 12,
    n_test: int = 4,
    shape: tuple[int, int, int] = (32, 32, 24),
    spacing: tuple[float, float, float] = (1.0, 1.0, 2.0),
    seed: int = 0,
) -> Path:
    import nibabel as nib

    out = Path(out)
    for d in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (out / d).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    affine = np.diag([*spacing, 1.0])
    for i in range(n_train + n_test):
        mask = _ellipsoid(rng, shape)
        img = _image(rng, mask) * 1000.0  # MR-like arbitrary units
        folder = "imagesTr" if i < n_train else "imagesTs"
        labels = "labelsTr" if i < n_train else "labelsTs"
        nib.save(nib.Nifti1Image(img, affine), str(out / folder / f"ell_{i:03d}_0000.nii.gz"))
        nib.save(
            nib.Nifti1Image(mask.astype(np.uint8), affine),
            str(out / labels / f"ell_{i:03d}.nii.gz"),
        )
    (out / "dataset.json").write_text(
        json.dumps(
            {
                "name": "ellipsoids",
                "modality": {"0": "MR"},
                "labels": {"0": "background", "1": "ellipsoid"},
                "numTraining": n_train,
                "file_ending": ".nii.gz",
            },
            indent=2,
        )
    )
    return out


def write_ct_series(
    folder: Path,
    hu: np.ndarray,
    patient: str,
    positions: np.ndarray | None = None,
    spacing: tuple[float, float, float] = (2.5, 0.8, 0.8),
    uids: list[str] | None = None,
) -> list:
    """Write ``hu`` (Z, Y, X) as one axial CT file per slice; returns the datasets.
    ``positions``: ImagePositionPatient per slice (default: 0, 0, z * spacing[0]);
    ``uids``: SOP Instance UIDs per slice (default: new ones)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    slices = []
    for z in range(hu.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = uids[z] if uids else generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.FrameOfReferenceUID = frame
        ds.PatientID, ds.PatientName = patient, f"Phantom^{patient}"
        ds.PatientBirthDate, ds.PatientSex = "", "O"
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber = "20260101", "120000", ""
        ds.ReferringPhysicianName, ds.StudyID = "", "1"
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 1, z + 1
        ds.Manufacturer = "scandx synthetic"
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = (
            [float(v) for v in positions[z]]
            if positions is not None
            else [0.0, 0.0, spacing[0] * z]
        )
        ds.PixelSpacing, ds.SliceThickness = [spacing[1], spacing[2]], spacing[0]
        ds.Rows, ds.Columns = hu.shape[1:]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0.0, 1.0, "HU"
        ds.PixelData = hu[z].astype(np.int16).tobytes()
        ds.save_as(folder / f"slice{z:03d}.dcm", enforce_file_format=True)
        slices.append(ds)
    return slices


def make_dicom_seg_cases(
    out: str | Path, n: int = 3, shape: tuple[int, int, int] = (8, 24, 24), seed: int = 0
) -> Path:
    """``out/<case>/`` with a CT series (one file per slice, HU) and a DICOM SEG of an
    ellipsoid written with highdicom; returns ``out``."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    out = Path(out)
    rng = np.random.default_rng(seed)
    for c in range(n):
        folder = out / f"case{c:02d}"
        mask = _ellipsoid(rng, shape)
        hu = (-100 + 150 * mask + rng.normal(0, 20, shape)).astype(np.int16)
        slices = write_ct_series(folder, hu, f"SEG{c:02d}")
        order = rng.permutation(shape[0])  # the SEG lists frames in another order
        seg = hd.seg.Segmentation(
            source_images=[slices[i] for i in order],
            pixel_array=mask[order].astype(np.uint8),
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=[
                hd.seg.SegmentDescription(
                    segment_number=1,
                    segment_label="lesion",
                    segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
                    segmented_property_type=codes.SCT.Neoplasm,
                    algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
                )
            ],
            series_instance_uid=hd.UID(),
            series_number=2,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="scandx synthetic",
            manufacturer_model_name="phantom",
            software_versions="1",
            device_serial_number="0",
        )
        seg.save_as(folder / "seg.dcm")
    return out
