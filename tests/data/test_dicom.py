"""DICOM pixel values against values worked out independently from the files' raw bytes."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from scandx.data.dicom import modality_values
from scandx.data.readers import read_image
from scandx.errors import BadImageError
from tests.conftest import DICOM_DATA, DICOM_TEST, needs_shared

pytestmark = needs_shared


def raw_stored(path, dtype):
    ds = pydicom.dcmread(path)
    return ds, np.frombuffer(ds.PixelData, dtype=dtype).reshape(ds.Rows, ds.Columns)


def linear_window(x, c, w):
    """DICOM PS3.3 C.11.2.1.2.1 LINEAR, to [0, 1]."""
    return np.clip((x - (c - 0.5)) / (w - 1) + 0.5, 0, 1)


def test_ct_rescale_gives_hounsfield_units_and_signed_pixels():
    ds, raw = raw_stored(DICOM_TEST / "CT_small.dcm", "<i2")
    hu = modality_values(ds, ds.pixel_array)
    np.testing.assert_array_equal(hu, raw.astype(np.float32) * 1.0 - 1024.0)
    assert ds.PixelRepresentation == 1 and ds.pixel_array.dtype == np.int16  # signed storage
    assert hu.min() < -500 < 0 < hu.max()  # air/lung well below water, tissue above


def test_mr_window_center_width_applied():
    ds, raw = raw_stored(DICOM_TEST / "MR_small.dcm", "<i2")
    img, meta = read_image(DICOM_TEST / "MR_small.dcm")
    assert meta["voi"] == "window" and img.shape == (1, 64, 64)
    np.testing.assert_allclose(img[0], linear_window(raw.astype(float), 600, 1600), atol=1e-6)


def test_monochrome1_is_inverted_after_rescale_and_window():
    path = DICOM_TEST / "dicomdirtests" / "77654033" / "CR1" / "6154"
    ds, raw = raw_stored(path, "<u2")
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    values = raw.astype(float) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    expected = 1 - linear_window(values, float(ds.WindowCenter), float(ds.WindowWidth))
    img, _ = read_image(path)
    np.testing.assert_allclose(img[0], expected, atol=1e-5)


def test_voi_lut_sequence_used():
    ds = pydicom.dcmread(DICOM_DATA / "vlut_04.dcm")
    item = ds.VOILUTSequence[0]
    n, first, bits = (int(v) for v in item.LUTDescriptor)
    lut = np.asarray(item.LUTData, dtype=float)
    stored = ds.pixel_array.astype(int)
    expected = lut[np.clip(stored - first, 0, n - 1)] / (2**bits - 1)
    img, meta = read_image(DICOM_DATA / "vlut_04.dcm")
    assert meta["voi"] == "voi_lut"
    np.testing.assert_allclose(img[0], expected, atol=1e-6)


def test_modality_lut_sequence_used():
    ds = pydicom.dcmread(DICOM_DATA / "mlut_18.dcm")
    item = ds.ModalityLUTSequence[0]
    n, first, _ = (int(v) for v in item.LUTDescriptor)
    lut = (
        np.frombuffer(item.LUTData, dtype="<u2")
        if isinstance(item.LUTData, bytes)
        else np.asarray(item.LUTData)
    )
    expected = lut[np.clip(ds.pixel_array.astype(int) - first, 0, n - 1)].astype(np.float32)
    np.testing.assert_array_equal(modality_values(ds, ds.pixel_array), expected)


LOSSLESS_TWINS = (
    [
        (DICOM_TEST / "MR_small.dcm", DICOM_TEST / name)
        for name in [
            "MR_small_RLE.dcm",
            "MR_small_bigendian.dcm",
            "MR_small_expb.dcm",
            "MR_small_implicit.dcm",
            "MR_small_jp2klossless.dcm",
            "MR_small_jpeg_ls_lossless.dcm",
            "MR_small_padded.dcm",
        ]
    ]
    + [
        (DICOM_DATA / "emri_small.dcm", DICOM_DATA / name)
        for name in [
            "emri_small_RLE.dcm",
            "emri_small_big_endian.dcm",
            "emri_small_jpeg_2k_lossless.dcm",
            "emri_small_jpeg_ls_lossless.dcm",
        ]
    ]
    + [
        (DICOM_DATA / "693_UNCR.dcm", DICOM_DATA / "693_J2KR.dcm"),
        (DICOM_DATA / "693_UNCI.dcm", DICOM_TEST / "693_J2KI.dcm"),
        (DICOM_DATA / "MR2_UNCR.dcm", DICOM_DATA / "MR2_J2KR.dcm"),
        (DICOM_DATA / "JPEG2000_UNC.dcm", DICOM_TEST / "JPEG2000.dcm"),
        (DICOM_DATA / "SC_rgb.dcm", DICOM_TEST / "SC_rgb_rle.dcm"),
        (DICOM_DATA / "SC_rgb.dcm", DICOM_DATA / "SC_rgb_expb.dcm"),
        (DICOM_DATA / "SC_rgb.dcm", DICOM_TEST / "SC_rgb_jpeg_gdcm.dcm"),  # JPEG lossless P14
        (DICOM_DATA / "SC_rgb_16bit.dcm", DICOM_TEST / "SC_rgb_rle_16bit.dcm"),
        (DICOM_DATA / "SC_rgb_2frame.dcm", DICOM_TEST / "SC_rgb_rle_2frame.dcm"),
        (DICOM_DATA / "US1_UNCR.dcm", DICOM_DATA / "US1_J2KR.dcm"),
        (DICOM_DATA / "OBXXXX1A.dcm", DICOM_DATA / "OBXXXX1A_expb.dcm"),  # palette, big endian
        (DICOM_DATA / "OBXXXX1A_2frame.dcm", DICOM_DATA / "OBXXXX1A_expb_2frame.dcm"),
        (DICOM_TEST / "rtdose.dcm", DICOM_TEST / "rtdose_rle.dcm"),
    ]
)


@pytest.mark.parametrize(("reference", "other"), LOSSLESS_TWINS, ids=lambda p: p.name)
def test_lossless_transfer_syntaxes_decode_identically(reference, other):
    a, _ = read_image(reference)
    b, _ = read_image(other)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("reference", "other", "mean_tol"),
    [
        (
            DICOM_DATA / "SC_rgb.dcm",
            DICOM_TEST / "SC_rgb_jpeg_dcmtk.dcm",
            0.01,
        ),  # JPEG baseline YBR
        (DICOM_DATA / "SC_rgb.dcm", DICOM_TEST / "SC_rgb_dcmtk_+eb+cy+np.dcm", 0.02),  # YBR 4:2:2
        (DICOM_DATA / "SC_rgb.dcm", DICOM_TEST / "SC_rgb_jls_lossy_line.dcm", 0.01),  # JPEG-LS near
        (DICOM_DATA / "RG3_J2KR.dcm", DICOM_DATA / "RG3_J2KI.dcm", 0.005),  # J2K irreversible
    ],
    ids=lambda v: getattr(v, "name", str(v)),
)
def test_lossy_transfer_syntaxes_stay_close(reference, other, mean_tol):
    a, _ = read_image(reference)
    b, _ = read_image(other)
    assert a.shape == b.shape
    assert float(np.abs(a - b).mean()) < mean_tol


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("JPGExtended.dcm", (1, 1024, 256)),  # JPEG extended, 12-bit
        ("JPEGLSNearLossless_16.dcm", (1, 50, 10)),
        ("image_dfl.dcm", (1, 512, 512)),  # deflated transfer syntax, 8-bit
        ("SC_rgb_jpeg_dcmtk.dcm", (3, 100, 100)),
        ("examples_ybr_color.dcm", (3, 30, 240, 320)),  # multi-frame JPEG baseline colour
    ],
)
def test_compressed_and_multiframe_shapes(name, shape):
    img, _ = read_image(DICOM_TEST / name)
    assert img.shape == shape and img.dtype == np.float32
    assert 0.0 <= img.min() and img.max() <= 1.0 and img.std() > 0.01


def test_multiframe_mr_is_frames_first():
    img, meta = read_image(DICOM_DATA / "emri_small.dcm")
    assert img.shape == (1, 10, 64, 64) and meta["frames"] == 10


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("MR_truncated.dcm", "cannot decode pixel data"),
        ("badVR.dcm", "cannot decode pixel data"),
        ("no_meta.dcm", "not a DICOM Part 10 file"),
        ("meta_missing_tsyntax.dcm", "Transfer Syntax"),
        ("JPEG2000-embedded-sequence-delimiter.dcm", "corrupted JPEG 2000 pixel data"),
        ("rtplan.dcm", "no pixel data"),
        ("test-SR.dcm", "no pixel data"),
    ],
)
def test_broken_files_raise_one_clear_error(name, reason):
    with pytest.raises(BadImageError) as err:
        read_image(DICOM_TEST / name)
    text = str(err.value)
    assert name in text and reason in text and "\n" not in text


def test_patient_id_is_pseudonymised():
    _, meta = read_image(DICOM_TEST / "CT_small.dcm")
    real = str(pydicom.dcmread(DICOM_TEST / "CT_small.dcm").PatientID)
    assert meta["patient_id"].startswith("pid-") and real not in meta["patient_id"]


def test_pixel_data_problem_names_truncation_missing_attributes_and_empty_encapsulation():
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit

    from scandx.data.dicom import pixel_data_problem

    ds = Dataset()
    assert pixel_data_problem(ds) is None  # no pixels, nothing to check
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.SamplesPerPixel = 4, 4, 16, 1
    ds.PixelData = bytes(32)
    assert pixel_data_problem(ds) is None
    ds.NumberOfFrames = 2  # two frames of 32 bytes described, 32 present
    assert pixel_data_problem(ds) == "pixel data truncated (32 of 64 bytes)"
    del ds.Rows
    assert "without valid Rows" in pixel_data_problem(ds)
    enc = Dataset()
    enc.file_meta = FileMetaDataset()
    enc.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    enc.PixelData = b"\xfe\xff\x00\xe0\x00\x00\x00\x00"  # an empty offset table, no fragment
    assert pixel_data_problem(enc) == "encapsulated pixel data has no fragment"
