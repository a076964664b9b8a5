"""Every reader serves every task: Siemens .ima files and NIfTI images for classification."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest

from scandx.data.readers import read_image, reader_for
from scandx.tasks.classification.data.images import InputContract, preprocess, read_case
from scandx.tasks.classification.data.sources import load_folder
from tests.conftest import DICOM_TEST, needs_shared


@needs_shared
def test_a_siemens_ima_file_is_read_as_dicom(tmp_path):
    shutil.copy(DICOM_TEST / "CT_small.dcm", tmp_path / "slice.IMA")
    assert reader_for(tmp_path / "slice.IMA") == "dicom"
    a, _ = read_image(tmp_path / "slice.IMA")
    b, _ = read_image(DICOM_TEST / "CT_small.dcm")
    assert np.array_equal(a, b)


def test_nifti_2d_images_and_3d_volumes_are_read_in_display_space(tmp_path):
    image = np.arange(20, dtype=np.uint8).reshape(4, 5)  # stored (x, y)
    nib.save(nib.Nifti1Image(image, np.eye(4)), tmp_path / "xray.nii.gz")
    arr, meta = read_image(tmp_path / "xray.nii.gz")
    assert arr.shape == (1, 5, 4) and meta["format"] == "nifti"
    assert arr[0, -1, 0] == 0 and arr[0, 0, -1] == pytest.approx(19 / 255)  # anterior up
    # the same volume stored flipped along x (another voxel order) reads the same
    vol = np.random.default_rng(0).normal(size=(6, 5, 4)).astype(np.float32)
    nib.save(nib.Nifti1Image(vol, np.diag([2.0, 1, 1, 1])), tmp_path / "a.nii")
    flipped = np.diag([-2.0, 1, 1, 1])
    flipped[0, 3] = 10.0
    nib.save(nib.Nifti1Image(vol[::-1], flipped), tmp_path / "b.nii")
    a, b = read_image(tmp_path / "a.nii")[0], read_image(tmp_path / "b.nii")[0]
    assert a.shape == (1, 4, 5, 6) and np.allclose(a, b)
    assert 0.0 <= a.min() and a.max() <= 1.0


def test_a_4d_nifti_is_refused_for_an_image(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3, 2), np.float32), np.eye(4)), tmp_path / "t.nii")
    with pytest.raises(Exception, match="4D NIfTI"):
        read_image(tmp_path / "t.nii")


@needs_shared
def test_classification_folders_accept_ima_and_nifti(tmp_path):
    rng = np.random.default_rng(1)
    for label, dicom in (("normal", "CT_small.dcm"), ("pneumonia", "MR_small.dcm")):
        for k in range(3):
            patient = tmp_path / label / f"p{label}{k}"
            patient.mkdir(parents=True)
            if k == 0:  # one copy: the same image twice would be one image with two cases
                shutil.copy(DICOM_TEST / dicom, patient / "IMG0001.IMA")
            img = rng.integers(0, 255, (16, 12)).astype(np.uint8)
            nib.save(nib.Nifti1Image(img, np.eye(4)), patient / f"img{k}.nii.gz")
    manifest = load_folder(tmp_path)
    assert len(manifest.cases) == 8 and not manifest.skipped
    contract = InputContract(spatial_dims=2, channels=1, size=[32, 32])
    for case in manifest.cases:
        x = preprocess(read_case(case), contract, case.path)
        assert tuple(x.shape) == (1, 32, 32)
