"""Damaged JPEG 2000 pixel data is refused (BadImageError naming the file, so that
--skip-bad lists it) rather than decoded into wrong pixels (issue 11: 59% wrong), while
intact files decode exactly as before."""

from __future__ import annotations

import struct

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate, generate_frames

from scandx.data import dicom as dicom_mod
from scandx.data.readers import read_image
from scandx.errors import BadImageError
from tests.conftest import DICOM_DATA, DICOM_TEST, needs_shared

pytestmark = needs_shared

FILES = [
    DICOM_DATA / "MR2_J2KR.dcm",
    DICOM_DATA / "RG1_J2KI.dcm",
    DICOM_DATA / "693_J2KR.dcm",
    DICOM_TEST / "693_J2KI.dcm",
    DICOM_TEST / "J2K_pixelrep_mismatch.dcm",
    DICOM_TEST / "GDCMJ2K_TextGBR.dcm",
]


def _frame(path):
    ds = pydicom.dcmread(path)
    return ds, bytes(next(generate_frames(ds.PixelData, number_of_frames=1)))


def _marker_in_packet_data(f):
    b = bytearray(f)
    b[len(f) // 2], b[len(f) // 2 + 1] = 0xFF, 0xA7  # two bytes flipped mid-stream
    return bytes(b)


def _truncated_with_eoc(f):
    return f[: len(f) // 2] + b"\xff\xd9"


def _bytes_lost(f):
    return f[: len(f) // 2] + f[len(f) // 2 + 1000 :]


def _no_eoc(f):
    return f[:-2]


def _tile_part_length(f):
    b = bytearray(f)
    sot = f.find(b"\xff\x90")
    struct.pack_into(">I", b, sot + 6, struct.unpack_from(">I", b, sot + 6)[0] - 500)
    return bytes(b)


def _siz_width(f):
    b = bytearray(f)
    struct.pack_into(">I", b, 8, struct.unpack_from(">I", b, 8)[0] - 16)
    return bytes(b)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_intact_j2k_decodes_exactly_as_without_the_check(path, monkeypatch):
    img, _ = read_image(path)
    monkeypatch.setattr(dicom_mod, "check_compressed", lambda ds, path: None)
    unchecked, _ = read_image(path)
    np.testing.assert_array_equal(img, unchecked)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_marker_in_packet_data, "marker code 0xFFA7 inside packet data"),
        (_truncated_with_eoc, "runs past the codestream"),
        (_bytes_lost, "runs past the codestream"),
        (_no_eoc, "no end-of-codestream marker"),
        (_tile_part_length, "tile-part lengths do not add up"),
        (_siz_width, "the DICOM header"),
    ],
)
@pytest.mark.parametrize("path", FILES[:3], ids=lambda p: p.name)
def test_damaged_j2k_is_refused_naming_the_file(tmp_path, path, damage, reason):
    ds, frame = _frame(path)
    ds.PixelData = encapsulate([damage(frame)])
    out = tmp_path / "damaged.dcm"
    ds.save_as(out)
    with pytest.raises(BadImageError, match="corrupted JPEG 2000 pixel data") as e:
        read_image(out)
    assert reason in str(e.value) and str(out) in str(e.value)


def test_silently_decodable_damage_was_wrong_pixels(tmp_path):
    """Why the marker check matters: the decoder accepts that stream and gets pixels wrong."""
    ds, frame = _frame(DICOM_DATA / "693_J2KR.dcm")
    ref = ds.pixel_array
    ds.PixelData = encapsulate([_marker_in_packet_data(frame)])
    assert (ds.pixel_array != ref).any()
