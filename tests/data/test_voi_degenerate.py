"""A degenerate VOI LUT or window is never applied as a blank image: the stored values
are scaled min-max instead, with a warning (issue 11: an all-black image)."""

from __future__ import annotations

import logging

import numpy as np
import pydicom
import pytest

from scandx.data.dicom import modality_values, robust_unit
from scandx.data.readers import read_image
from tests.conftest import DICOM_DATA, DICOM_TEST, needs_shared

pytestmark = needs_shared


def _flat_lut(item):
    item.LUTData = [1000] * 256


def _short_descriptor(item):
    item.LUTDescriptor = [512, 0, 16]  # 512 entries announced, 256 stored


def _lut_beyond_the_data(item):
    item.LUTDescriptor = [256, 5000, 16]  # every stored value (0..255) maps to entry 0


def _bits_out_of_range(item):
    item.LUTDescriptor = [256, 0, 4]


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (_flat_lut, "every LUT entry is equal"),
        (_short_descriptor, "LUT Descriptor gives 512 entries"),
        (_lut_beyond_the_data, "the VOI LUT maps every pixel to"),
        (_bits_out_of_range, "4 bits per entry"),
    ],
)
def test_degenerate_voi_lut_falls_back_to_stored_values(tmp_path, caplog, edit, reason):
    ds = pydicom.dcmread(DICOM_DATA / "vlut_04.dcm")
    edit(ds.VOILUTSequence[0])
    path = tmp_path / "vlut.dcm"
    ds.save_as(path)
    with caplog.at_level(logging.WARNING, logger="scandx.data.dicom"):
        img, meta = read_image(path)
    assert np.ptp(img) > 0.5  # never a constant (all-black) image
    assert meta["voi"] == "minmax_bad_voi"
    expected = robust_unit(modality_values(ds, ds.pixel_array))
    np.testing.assert_allclose(img[0], expected, atol=1e-6)
    assert reason in caplog.text and "vlut.dcm" in caplog.text


def test_intact_voi_lut_still_applied():
    img, meta = read_image(DICOM_DATA / "vlut_04.dcm")
    assert meta["voi"] == "voi_lut" and np.ptp(img) > 0.5


@pytest.mark.parametrize(
    ("center", "width", "reason"),
    [
        (600, 1, "width must be > 1"),
        (600, 0.5, "width must be > 1"),
        (90000, 100, "the window maps every pixel to 0"),
    ],
)
def test_degenerate_window_falls_back_to_stored_values(tmp_path, caplog, center, width, reason):
    ds = pydicom.dcmread(DICOM_TEST / "MR_small.dcm")
    ds.WindowCenter, ds.WindowWidth = center, width
    path = tmp_path / "mr.dcm"
    ds.save_as(path)
    with caplog.at_level(logging.WARNING, logger="scandx.data.dicom"):
        img, meta = read_image(path)
    assert meta["voi"] == "minmax_bad_voi" and np.ptp(img) > 0.5
    assert reason in caplog.text
