"""Damaged and odd image files: read correctly, or refused with one line; never a traceback.

Targets: DICOM (byte damage to real files of several transfer syntaxes, and structured
damage to the attributes that drive decoding), PNG/TIFF (byte damage, odd arrays) and
NIfTI (odd shapes, dtypes, non-finite voxels, broken geometry) through the readers every
task uses.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scandx.data.readers import read_image
from scandx.tasks.classification.data.synthetic import phantom, write_dicom
from tests.conftest import DICOM_DATA, DICOM_TEST, SHARED
from tests.fuzz.mutations import damage, edits, odd_numbers
from tests.fuzz.outcomes import attempt

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on odd values

REAL_DICOM = [
    DICOM_TEST / "CT_small.dcm",
    DICOM_TEST / "MR_small_RLE.dcm",
    DICOM_TEST / "MR_small_jp2klossless.dcm",
    DICOM_TEST / "JPEG2000.dcm",
    DICOM_TEST / "MR_small_jpeg_ls_lossless.dcm",
    DICOM_DATA / "vlut_04.dcm",
]


def check_image(result: tuple[np.ndarray, dict[str, Any]]) -> str | None:
    arr = result[0]
    if not isinstance(arr, np.ndarray) or arr.ndim not in (3, 4) or arr.size == 0:
        return f"shape {getattr(arr, 'shape', None)}"
    if not np.isfinite(arr).all():
        return "non-finite values"
    if arr.min() < 0 or arr.max() > 1:
        return f"values outside [0, 1]: {arr.min()}..{arr.max()}"
    return None


@pytest.fixture(scope="module")
def dicom_seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("seeds")
    rng = np.random.default_rng(0)
    seeds = {}
    for variant in range(3):
        p = out / f"synthetic{variant}.dcm"
        write_dicom(p, phantom(rng, 32, lesion=True)[0], "P1", variant, "F")
        seeds[p.name] = p.read_bytes()
    if SHARED.is_dir():
        seeds.update({p.name: p.read_bytes() for p in REAL_DICOM if p.exists()})
    return seeds


@given(seed=st.integers(0, 100), plan=edits)
def test_damaged_dicom_bytes(dicom_seeds: dict[str, bytes], tmp_path: Path, seed, plan):
    name = sorted(dicom_seeds)[seed % len(dicom_seeds)]
    path = tmp_path / "damaged.dcm"
    path.write_bytes(damage(dicom_seeds[name], plan))
    attempt("dicom bytes", lambda: read_image(path), check_image)


DECODING_ATTRIBUTES = [
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "SamplesPerPixel",
    "NumberOfFrames",
    "RescaleSlope",
    "RescaleIntercept",
    "WindowCenter",
    "WindowWidth",
    "PlanarConfiguration",
]
_attr_values = odd_numbers | st.integers(-5, 70000) | st.sampled_from(["", "x", "1\\2", "nan"])


@given(
    seed=st.integers(0, 100),
    changes=st.dictionaries(st.sampled_from(DECODING_ATTRIBUTES), _attr_values, max_size=3),
    photometric=st.sampled_from([None, "MONOCHROME1", "RGB", "PALETTE COLOR", "YBR_FULL", "?"]),
    delete=st.sampled_from([None, "PixelData", "Rows", "PhotometricInterpretation", "BitsStored"]),
)
def test_dicom_with_odd_attributes(
    dicom_seeds: dict[str, bytes], tmp_path: Path, seed, changes, photometric, delete
):
    import pydicom

    name = sorted(dicom_seeds)[seed % len(dicom_seeds)]
    ds = pydicom.dcmread(io.BytesIO(dicom_seeds[name]))
    for key, value in changes.items():
        try:
            setattr(ds, key, value)
        except (ValueError, TypeError, OverflowError):
            continue  # pydicom itself refuses the value: not a file anyone can write
    if photometric:
        ds.PhotometricInterpretation = photometric
    if delete and delete in ds:
        delattr(ds, delete)
    path = tmp_path / "odd.dcm"
    try:
        ds.save_as(path)
    except Exception:  # noqa: BLE001 - unwritable combinations are not inputs
        return
    attempt("dicom attributes", lambda: read_image(path), check_image)


def _png_bytes(rng: np.random.Generator) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((rng.random((24, 20)) * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@given(seed=st.integers(0, 2**16), plan=edits, fmt=st.sampled_from(["png", "tiff"]))
def test_damaged_raster_bytes(tmp_path: Path, seed, plan, fmt):
    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray((rng.random((24, 20)) * 255).astype(np.uint8)).save(buf, format=fmt.upper())
    path = tmp_path / f"damaged.{fmt}"
    path.write_bytes(damage(buf.getvalue(), plan))
    attempt("raster bytes", lambda: read_image(path), check_image)


@given(
    shape=st.lists(st.integers(1, 9), min_size=2, max_size=3),
    kind=st.sampled_from(["u8", "u16", "i32", "f32", "f32-nan", "f32-inf", "bool", "const"]),
    fmt=st.sampled_from(["png", "tiff"]),
)
def test_odd_raster_arrays(tmp_path: Path, shape, kind, fmt):
    from PIL import Image

    rng = np.random.default_rng(0)
    a = rng.random(shape[:2]).astype(np.float32)
    arrays = {
        "u8": (a * 255).astype(np.uint8),
        "u16": (a * 65535).astype(np.uint16),
        "i32": (a * 1e6 - 5e5).astype(np.int32),
        "f32": a * 1e4 - 7,
        "f32-nan": np.where(a > 0.5, np.nan, a).astype(np.float32),
        "f32-inf": np.where(a > 0.5, np.inf, a).astype(np.float32),
        "bool": a > 0.5,
        "const": np.full(shape[:2], 7, np.uint16),
    }
    path = tmp_path / f"odd.{fmt}"
    try:
        Image.fromarray(arrays[kind]).save(path)
    except (OSError, TypeError, KeyError, ValueError):
        return  # Pillow cannot write this combination in this format
    attempt("raster arrays", lambda: read_image(path), check_image)


@given(
    shape=st.lists(st.integers(0, 6), min_size=1, max_size=5),
    dtype=st.sampled_from(["uint8", "int16", "float32", "float64"]),
    poison=st.sampled_from([None, "nan", "inf"]),
    zoom=odd_numbers,
    with_label=st.booleans(),
)
def test_odd_nifti_volumes(tmp_path: Path, shape, dtype, poison, zoom, with_label):
    import nibabel as nib

    from scandx.tasks.segmentation.sources import SegCase
    from scandx.tasks.segmentation.volumes import read_case_arrays

    data = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape) % 7
    if poison and data.size and dtype.startswith("float"):
        data.flat[0] = np.nan if poison == "nan" else np.inf
    img = nib.Nifti1Image(data.astype(dtype), np.diag([1.0, 1.0, 1.0, 1.0]))
    try:
        img.header.set_zooms(tuple(float(zoom) for _ in range(len(shape))))
    except Exception:  # noqa: BLE001 - nibabel refuses the zoom: not a writable file
        return
    path = tmp_path / "img.nii.gz"
    label = tmp_path / "lbl.nii.gz"
    try:
        nib.save(img, path)
        if with_label:
            nib.save(nib.Nifti1Image((data > 3).astype(np.uint8), img.affine), label)
    except Exception:  # noqa: BLE001
        return
    case = SegCase("c1", [str(path)], str(label) if with_label else None)

    def check(loaded: Any) -> str | None:
        if not np.isfinite(loaded.image).all():
            return "non-finite voxels accepted"
        if loaded.image.ndim not in (3, 4) or 0 in loaded.image.shape:
            return f"image shape {loaded.image.shape}"
        if not all(np.isfinite(s) and s > 0 for s in loaded.spacing):
            return f"spacing {loaded.spacing}"
        return None

    attempt("nifti volumes", lambda: read_case_arrays(case, {0: "bg", 1: "fg"}), check)
