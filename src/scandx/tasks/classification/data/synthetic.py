"""Synthetic chest-like phantoms with a known answer, written as real files.

Each patient has one or two frontal "radiographs": a body, two darker lung
fields, a bright mediastinum, smooth anatomical texture and noise. Patients of
class ``lesion`` carry a round opacity of random size, place and contrast in
one lung. Files are written as DICOM (12-bit, some MONOCHROME1, some with
Rescale Slope/Intercept and a window) and as 8-bit PNG, so everything
downstream runs through the real readers. ``lesions.csv`` records each lesion
(centre and radius), the ground truth for explanation checks.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"


def phantom(rng: np.random.Generator, size: int, lesion: bool) -> tuple[np.ndarray, dict]:
    """One image in display space [0, 1] and its lesion description (empty if none)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    shift = rng.normal(0, 0.02, 2)
    img = np.full((size, size), 0.08)
    body = ((xx - 0.5 - shift[0]) / 0.45) ** 2 + ((yy - 0.55 - shift[1]) / 0.48) ** 2 < 1
    img[body] = 0.62
    lungs = []
    for side in (-1, 1):
        cx, cy = 0.5 + side * 0.19 + shift[0], 0.5 + shift[1]
        rx, ry = 0.15 * rng.uniform(0.9, 1.1), 0.3 * rng.uniform(0.9, 1.1)
        m = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1
        img[m] = 0.22
        lungs.append((cx, cy, rx, ry))
    img[(np.abs(xx - 0.5 - shift[0]) < 0.05) & body] = 0.85  # mediastinum / spine
    texture = _smooth(rng.normal(0, 1, (size, size)), max(1, size // 16))
    img = img + 0.05 * texture / (texture.std() + 1e-6)
    info: dict = {}
    if lesion:
        cx, cy, rx, ry = lungs[int(rng.integers(0, 2))]
        r = rng.uniform(0.05, 0.11)
        px = cx + rng.uniform(-0.5, 0.5) * rx
        py = cy + rng.uniform(-0.6, 0.6) * ry
        contrast = rng.uniform(0.18, 0.4)
        blob = np.exp(-(((xx - px) ** 2 + (yy - py) ** 2) / (2 * (r / 1.5) ** 2)))
        img = img + contrast * blob
        info = {"cx": px * size, "cy": py * size, "radius": r * size, "contrast": contrast}
    img = img + rng.normal(0, 0.025, img.shape)
    return np.clip(img, 0, 1).astype(np.float32), info


def _smooth(a: np.ndarray, k: int) -> np.ndarray:
    kernel = np.ones(2 * k + 1) / (2 * k + 1)
    a = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 0, a)
    return np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="same"), 1, a)


def _phantom_dataset(sop_class: str, patient_id: str, sex: str, age: int, modality: str):
    """A DICOM dataset with file meta and the patient/study fields every phantom file has."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = patient_id
    ds.PatientName = "Phantom^" + patient_id
    ds.PatientSex = sex
    ds.PatientAge = f"{age:03d}Y"
    ds.Modality = modality
    ds.SamplesPerPixel = 1
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    return ds


def write_dicom(
    path: Path, img: np.ndarray, patient_id: str, variant: int, sex: str, age: int = 50
) -> None:
    """Write display values as a 12-bit CR DICOM that reads back to the same values.

    variant 0: MONOCHROME2, window over the full range; 1: MONOCHROME1 (inverted
    storage); 2: Rescale Slope 2 / Intercept -1000 with a matching window.
    """
    stored = np.round(img * 4095).astype(np.uint16)
    slope, intercept = (2.0, -1000.0) if variant == 2 else (1.0, 0.0)
    if variant == 1:
        stored = (4095 - stored).astype(np.uint16)
    lo, hi = intercept, 4095 * slope + intercept
    ds = _phantom_dataset(CR_IMAGE_STORAGE, patient_id, sex, age, "CR")
    ds.Manufacturer = f"scandx synthetic {'AB'[variant % 2]}"  # two "vendors" for subgroups
    ds.Rows, ds.Columns = img.shape
    ds.PhotometricInterpretation = "MONOCHROME1" if variant == 1 else "MONOCHROME2"
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.WindowCenter = (lo + hi) / 2 + 0.5
    ds.WindowWidth = hi - lo + 1
    ds.PixelSpacing = [0.5, 0.5]
    ds.PixelData = stored.tobytes()
    ds.save_as(path, enforce_file_format=True)


def write_png(path: Path, img: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(np.round(img * 255).astype(np.uint8), mode="L").save(path)


def make_phantom_dataset(
    out: str | Path,
    n_patients: int = 160,
    size: int = 64,
    seed: int = 0,
    lesion_fraction: float = 0.5,
) -> Path:
    """Write ``out/images/{normal,lesion}/<patient>/imgN.{dcm,png}`` and ``out/lesions.csv``.

    Returns the folder-per-class image root (``out/images``).
    """
    out = Path(out)
    images = out / "images"
    rng = np.random.default_rng(seed)
    ages = np.random.default_rng([seed, 1])  # own stream: the images stay as before
    rows = []
    for p in range(n_patients):
        has_lesion = bool(rng.random() < lesion_fraction)
        cls = "lesion" if has_lesion else "normal"
        pid = f"P{p:04d}"
        folder = images / cls / pid
        folder.mkdir(parents=True, exist_ok=True)
        sex = "F" if rng.random() < 0.5 else "M"
        age = int(ages.integers(20, 90))
        for i in range(1 + int(rng.random() < 0.4)):
            img, info = phantom(rng, size, has_lesion)
            if (p + i) % 2 == 0:
                path = folder / f"img{i}.dcm"
                write_dicom(path, img, pid, variant=(p // 2 + i) % 3, sex=sex, age=age)
            else:
                path = folder / f"img{i}.png"
                write_png(path, img)
            if info:
                rel = str(path.relative_to(images))
                rows.append({"path": rel, **{k: round(v, 3) for k, v in info.items()}})
    with open(out / "lesions.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "cx", "cy", "radius", "contrast"])
        w.writeheader()
        w.writerows(rows)
    return images


MULTIFRAME_WORD_SC = "1.2.840.10008.5.1.4.1.1.7.3"  # Multi-frame Grayscale Word Secondary Capture


def phantom_volume(
    rng: np.random.Generator, depth: int, size: int, lesion: bool
) -> tuple[np.ndarray, dict]:
    """A (D, H, W) "CT" volume in display space: an ellipsoid body with two lung cavities,
    texture and noise; class ``lesion`` adds a ball-shaped opacity inside one lung."""
    zz, yy, xx = np.mgrid[0:depth, 0:size, 0:size].astype(np.float32)
    zz, yy, xx = zz / depth, yy / size, xx / size
    vol = np.full((depth, size, size), 0.05, np.float32)
    body = ((xx - 0.5) / 0.45) ** 2 + ((yy - 0.5) / 0.4) ** 2 + ((zz - 0.5) / 0.7) ** 2 < 1
    vol[body] = 0.6
    lungs = []
    for side in (-1, 1):
        c = (0.5 + side * 0.2, 0.5, 0.5)
        r = (0.14 * rng.uniform(0.9, 1.1), 0.25 * rng.uniform(0.9, 1.1), 0.4)
        m = sum(((a - ca) / ra) ** 2 for a, ca, ra in zip((xx, yy, zz), c, r, strict=True)) < 1
        vol[m] = 0.2
        lungs.append((c, r))
    info: dict = {}
    if lesion:
        (cx, cy, cz), (rx, ry, rz) = lungs[int(rng.integers(0, 2))]
        px = cx + rng.uniform(-0.4, 0.4) * rx
        py = cy + rng.uniform(-0.4, 0.4) * ry
        pz = cz + rng.uniform(-0.4, 0.4) * rz
        radius = rng.uniform(0.07, 0.12)
        contrast = rng.uniform(0.25, 0.45)
        d2 = (xx - px) ** 2 + (yy - py) ** 2 + ((zz - pz) * depth / size) ** 2
        vol = vol + contrast * np.exp(-d2 / (2 * (radius / 1.5) ** 2))
        info = {
            "cx": px * size,
            "cy": py * size,
            "cz": pz * depth,
            "radius": radius * size,
            "contrast": contrast,
        }
    vol = vol + rng.normal(0, 0.03, vol.shape)
    return np.clip(vol, 0, 1).astype(np.float32), info


def write_dicom_volume(
    path: Path, vol: np.ndarray, patient_id: str, sex: str = "O", age: int = 50
) -> None:
    """Write a (D, H, W) display-space volume as one 12-bit multi-frame DICOM file."""
    stored = np.round(vol * 4095).astype(np.uint16)
    ds = _phantom_dataset(MULTIFRAME_WORD_SC, patient_id, sex, age, "OT")
    ds.Manufacturer = "scandx synthetic"
    ds.NumberOfFrames = vol.shape[0]
    ds.Rows, ds.Columns = vol.shape[1:]
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.WindowCenter, ds.WindowWidth = 2048.0, 4096.0
    ds.PixelData = stored.tobytes()
    ds.save_as(path, enforce_file_format=True)


def make_phantom_volumes(
    out: str | Path, n_patients: int = 80, size: int = 32, depth: int = 16, seed: int = 0
) -> Path:
    """Write ``out/volumes/{normal,lesion}/<patient>/vol.dcm`` (multi-frame) and
    ``out/lesions3d.csv`` (centre x, y, z in voxels and radius); returns ``out/volumes``."""
    out = Path(out)
    root = out / "volumes"
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        has_lesion = bool(rng.random() < 0.5)
        cls = "lesion" if has_lesion else "normal"
        folder = root / cls / f"V{p:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        vol, info = phantom_volume(rng, depth, size, has_lesion)
        sex = "F" if rng.random() < 0.5 else "M"
        write_dicom_volume(folder / "vol.dcm", vol, f"V{p:04d}", sex, int(rng.integers(20, 90)))
        if info:
            rel = str((folder / "vol.dcm").relative_to(root))
            rows.append({"path": rel, **{k: round(v, 3) for k, v in info.items()}})
    with open(out / "lesions3d.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "cx", "cy", "cz", "radius", "contrast"])
        w.writeheader()
        w.writerows(rows)
    return root
