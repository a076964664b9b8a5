"""Non-finite pixels and voxels are refused by the shared readers, naming the file and
how many values are NaN or infinite (one such voxel made training NaN, issue 11)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from PIL import Image

from scandx.data.nifti import read_nifti
from scandx.data.readers import read_image
from scandx.errors import BadImageError
from tests.conftest import DICOM_TEST, needs_shared


def _float_tiff(path, value):
    a = np.linspace(0, 100, 32 * 32, dtype=np.float32).reshape(32, 32)
    a[3, 4] = value
    a[5, 6] = value
    Image.fromarray(a, mode="F").save(path)
    return path


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_float_tiff_with_non_finite_pixels_is_refused_with_a_count(tmp_path, value):
    path = _float_tiff(tmp_path / "x.tif", value)
    with pytest.raises(BadImageError, match=r"2 of 1024 values are not finite") as e:
        read_image(path)
    assert str(path) in str(e.value)


def test_finite_float_tiff_still_reads(tmp_path):
    img, _ = read_image(_float_tiff(tmp_path / "x.tif", 50.0))
    assert img.shape == (1, 32, 32) and np.isfinite(img).all()


@needs_shared
def test_dicom_whose_rescale_overflows_to_infinity_is_refused(tmp_path):
    ds = pydicom.dcmread(DICOM_TEST / "CT_small.dcm")
    ds.RescaleSlope = "1e38"  # stored values x 1e38 overflow float32
    path = tmp_path / "ct.dcm"
    ds.save_as(path)
    with pytest.raises(BadImageError, match="values are not finite"):
        read_image(path)


def _nifti(path, data):
    import nibabel as nib

    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0])), str(path))
    return path


def test_nifti_with_one_nan_voxel_is_refused(tmp_path):
    data = np.ones((8, 8, 4), np.float32)
    data[1, 2, 3] = np.nan
    with pytest.raises(BadImageError, match=r"1 of 256 values are not finite \(1 NaN"):
        read_nifti(_nifti(tmp_path / "a.nii.gz", data))


def test_nifti_trailing_singleton_axes_are_dropped_and_extra_axes_refused(tmp_path):
    data = np.ones((8, 8, 4, 1, 1), np.float32)
    assert read_nifti(_nifti(tmp_path / "a.nii.gz", data))[0].shape == (8, 8, 4)
    four = _nifti(tmp_path / "b.nii.gz", np.ones((8, 8, 4, 2), np.float32))
    assert read_nifti(four)[0].shape == (8, 8, 4, 2)  # channels, for images
    with pytest.raises(BadImageError, match=r"4D NIfTI of shape \(8, 8, 4, 2\) where a 3D"):
        read_nifti(four, 3)
