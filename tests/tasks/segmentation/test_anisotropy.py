"""Anisotropic volumes: nnU-Net's target-spacing rule, spacing-aware U-Net layout, and
the 2D (slice by slice) choice for few thick slices."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from scandx.cli import main
from scandx.core.privacy import file_ref
from scandx.tasks.segmentation.fingerprint import seg_fingerprint
from scandx.tasks.segmentation.plan import target_spacing, unet_layout
from scandx.tasks.segmentation.sources import load_seg_source
from scandx.tasks.segmentation.synthetic import make_ellipsoid_decathlon

THICK = (0.8, 0.8, 5.0)  # NIfTI axes x, y, z: 5 mm slices of 0.8 mm pixels


def _fp(spacings: list[list[float]], shape: list[int]) -> dict:
    a = np.array(spacings)
    return {
        "spatial_dims": 3,
        "median_shape": shape,
        "median_spacing": list(np.median(a, 0)),
        "spacing_p10": list(np.percentile(a, 10, 0)),
        "spacings_differ": bool(np.ptp(a, 0).max() > 1e-3),
    }


def test_target_spacing_follows_the_anisotropy_rule_hand_worked():
    spacings = [[0.7, 0.7, z] for z in (3.0, 4.0, 5.0, 5.0, 6.0)]
    # thick and few slices: the thick axis takes its 10th percentile (3.4), not the median 5
    target, thick = target_spacing(_fp(spacings, [320, 320, 20]))
    assert thick == 2 and target == pytest.approx([0.7, 0.7, 3.4])
    # thick but many slices: plain median
    target, thick = target_spacing(_fp(spacings, [320, 320, 200]))
    assert thick == 2 and target == pytest.approx([0.7, 0.7, 5.0])
    # isotropic: median, no thick axis; all cases alike: no resampling
    assert target_spacing(_fp([[1, 1, 1], [1, 1, 1.2]], [96, 96, 96])) == ([1, 1, 1.1], None)
    assert target_spacing(_fp([[0.7, 0.7, 5.0]] * 3, [320, 320, 20])) == (None, 2)


def test_unet_layout_keeps_thick_axes_out_of_early_pooling_and_kernels():
    strides, kernels = unet_layout([16, 192, 192], [5.0, 0.7, 0.7])
    assert strides[:3] == [[1, 1, 1], [1, 2, 2], [1, 2, 2]]
    assert kernels[0] == [1, 3, 3]  # no 3-voxel mixing across 5 mm slices at full resolution
    assert np.prod([s[0] for s in strides]) == 4  # the 16-slice patch is halved twice
    iso, _ = unet_layout([64, 96, 96], [1.0, 1.0, 1.0])  # isotropic: the familiar layout
    assert iso == [[1, 1, 1]] + [[2, 2, 2]] * 4


def test_few_thick_slices_get_a_2d_unet_slice_by_slice_end_to_end(tmp_path, capsys):
    data = make_ellipsoid_decathlon(
        tmp_path / "thick", n_train=10, n_test=3, shape=(48, 48, 8), spacing=THICK, seed=4
    )
    manifest = load_seg_source(data)
    fp = seg_fingerprint(manifest)
    assert fp["median_shape"] == [48, 48, 8] and target_spacing(fp) == (None, 2)
    # plan, then train a fixed number of steps: the Dice below must not depend on how many
    # epochs this CPU (its speed, its load, its bf16 support) fits in a time budget
    assert main(["-q", "plan", "--data", str(data), "--out", str(tmp_path / "p")]) == 0
    plan_path = tmp_path / "p" / "plan.json"
    plan = json.loads(plan_path.read_text())
    assert plan["spatial_dims"] == 2 and plan["slice_axis"] == 2 and plan["patch_size"] == [48, 48]
    assert any("slice by slice" in n for n in plan["notes"])
    plan.update(epochs=8, steps_per_epoch=20, val_every=4)  # Dice 0.97-0.98, seeds 0-4
    plan_path.write_text(json.dumps(plan))
    run = tmp_path / "run"
    args = ["-q", "train", "--data", str(data), "--out", str(run), "--plan", str(plan_path)]
    assert main(args) == 0
    assert len((run / "log.jsonl").read_text().splitlines()) == 8
    assert main(["-q", "evaluate", str(run), "--data", str(data), "--bootstrap", "200"]) == 0
    m = json.loads((run / "eval" / "test" / "metrics.json").read_text())
    assert m["cases"] == 3 and m["dice"]["value"] > 0.95, m["dice"]
    src = data / "imagesTs" / "ell_010_0000.nii.gz"
    out = tmp_path / "pred"
    assert main(["-q", "predict", str(run), str(src), "--out", str(out)]) == 0
    pred = nib.load(str(out / f"{file_ref(src)}.nii.gz"))  # named by keyed reference
    assert pred.shape == (48, 48, 8)
    np.testing.assert_allclose(pred.affine, nib.load(str(src)).affine)
    # --dims 3d overrides: a 3D U-Net whose first levels leave the thick axis alone
    assert (
        main(["-q", "plan", "--data", str(data), "--out", str(tmp_path / "p3"), "--dims", "3d"])
        == 0
    )
    plan3 = json.loads((tmp_path / "p3" / "plan.json").read_text())
    assert plan3["spatial_dims"] == 3 and plan3["slice_axis"] is None
    assert plan3["model_kwargs"]["strides"][1] == [2, 2, 1]
    assert plan3["model_kwargs"]["kernels"][0] == [3, 3, 1]


def test_dims_on_2d_images_or_classification_data_is_one_line(tmp_path, capsys):
    from scandx.tasks.segmentation.synthetic import make_ellipse_folders

    data = make_ellipse_folders(tmp_path / "f", n=6, size=32)
    code = main(["plan", "--data", str(data), "--out", str(tmp_path / "p"), "--dims", "3d"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "3D was requested" in err[0]
    assert not (tmp_path / "p").exists()
