"""A NaN/Inf voxel or a 4D image where 3D is expected stops segmentation training with
one line naming the file, before anything is written (issue 11: NaN loss, exit 0)."""

from __future__ import annotations

import numpy as np
import pytest

from scandx.cli import main
from scandx.tasks.segmentation.synthetic import make_ellipsoid_decathlon


def _edit(path, fn):
    import nibabel as nib

    img = nib.load(str(path))
    nib.save(nib.Nifti1Image(fn(np.asarray(img.dataobj).copy()), img.affine), str(path))


def _nan(a):
    a[3, 3, 3] = np.nan
    return a


def _inf(a):
    a[1, 2, 3] = np.inf
    return a


@pytest.mark.parametrize(
    ("edit", "folder", "message"),
    [
        (_nan, "imagesTr", "1 of 3072 values are not finite (1 NaN, 0 infinite)"),
        (_inf, "imagesTr", "1 of 3072 values are not finite (0 NaN, 1 infinite)"),
        (lambda a: np.stack([a] * 3, -1), "imagesTr", "3 channel(s) of shape (16, 16, 12)"),
        (lambda a: np.stack([a] * 2, -1), "labelsTr", "4D NIfTI of shape (16, 16, 12, 2)"),
    ],
)
def test_bad_volume_stops_training_with_one_line(tmp_path, capsys, edit, folder, message):
    data = make_ellipsoid_decathlon(tmp_path / "d", n_train=4, n_test=1, shape=(16, 16, 12))
    name = "ell_001_0000.nii.gz" if folder == "imagesTr" else "ell_001.nii.gz"
    _edit(data / folder / name, edit)
    run = tmp_path / "run"
    assert main(["-q", "train", "--data", str(data), "--out", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and name in err[0] and message in err[0]
    assert not run.exists()


def test_singleton_fourth_axis_is_a_3d_volume(tmp_path):
    from scandx.tasks.segmentation.sources import load_seg_source
    from scandx.tasks.segmentation.volumes import read_case_arrays

    data = make_ellipsoid_decathlon(tmp_path / "d", n_train=2, n_test=0, shape=(16, 16, 12))
    _edit(data / "labelsTr" / "ell_001.nii.gz", lambda a: a[..., None])
    _edit(data / "imagesTr" / "ell_001_0000.nii.gz", lambda a: a[..., None])
    manifest = load_seg_source(data)
    loaded = read_case_arrays(manifest.cases[1], manifest.labels)
    assert loaded.image.shape == (1, 16, 16, 12) and loaded.label.shape == (16, 16, 12)
