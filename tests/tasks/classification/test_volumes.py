"""3D classification end to end on synthetic multi-frame DICOM volumes: plan, train,
evaluate (report), explain with per-slice overlays; and the 3D pieces on their own."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from scandx.cli import main
from scandx.tasks.classification.data.images import letterbox_resize
from scandx.tasks.classification.data.synthetic import make_phantom_volumes, write_png
from scandx.tasks.classification.explain.overlay import montage, peak_slice, unletterbox
from scandx.tasks.classification.plan import Augmentation
from scandx.tasks.classification.training.augment import augment_batch


@pytest.fixture(scope="module")
def volumes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_phantom_volumes(tmp_path_factory.mktemp("vol"), n_patients=48, size=24, depth=8)


@pytest.fixture(scope="module")
def volume_run(volumes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("vrun") / "run"
    args = ["train", "--data", str(volumes), "--out", str(run), "--time-budget", "8"]
    assert main(["-q", *args, "--model", "simple-cnn"]) == 0
    return run


def test_volumes_plan_a_3d_model(volume_run: Path):
    plan = json.loads((volume_run / "plan.json").read_text())
    assert plan["spatial_dims"] == 3
    assert plan["input_size"] == [10, 24, 24]  # 8 frames, raised to simple-cnn's minimum
    assert plan["channels_last"] is False
    info = json.loads((volume_run / "model" / "model.json").read_text())
    assert info["input"]["spatial_dims"] == 3


def test_volume_evaluate_writes_a_report_with_slice_overlays(volume_run: Path, volumes: Path):
    args = ["evaluate", str(volume_run), "--data", str(volumes), "--bootstrap", "100"]
    assert main(["-q", *args]) == 0
    page = (volume_run / "eval" / "test" / "report.html").read_text()
    assert re.search(r"\(slice \d+\)", page)
    assert "by sex:" in (volume_run / "model" / "model_card.md").read_text()


def test_volume_explain_writes_one_overlay_per_slice(volume_run: Path, volumes: Path, tmp_path):
    vol = next(volumes.glob("lesion/*/vol.dcm"))
    out = tmp_path / "x"
    assert main(["-q", "explain", str(volume_run), str(vol), "--out", str(out)]) == 0
    # named by position, never by the file's name; auto: LayerCAM for the dense head
    (png,) = out.glob("*_layercam.png")
    stem = png.stem
    slices = sorted((out / f"{stem}_slices").glob("slice_*.png"))
    assert len(slices) == 8
    heat = np.load(out / f"{stem}.npy")
    assert heat.shape == (8, 24, 24) and 0 <= heat.min() and heat.max() <= 1
    with open(out / "explanations.csv") as f:
        row = next(csv.DictReader(f))
    assert row["overlay"].endswith(f"{stem}.png") and row["method"] == "layercam"


def test_2d_image_to_a_3d_model_is_one_clear_line(volume_run: Path, tmp_path, capsys):
    png = tmp_path / "flat.png"
    write_png(png, np.full((24, 24), 0.5, np.float32))
    assert main(["-q", "predict", str(volume_run), str(png)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2D image given to a 3D model" in err[0]


def test_single_frame_image_in_a_volume_data_set_is_a_bad_file(volumes, tmp_path, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(volumes, data)
    write_png(data / "lesion" / "odd.png", np.full((24, 24), 0.5, np.float32))
    code = main(["-q", "plan", "--data", str(data), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "odd.png" in err and "2D image in a data set of volumes" in err
    assert not (tmp_path / "r").exists()


def test_volume_augmentation_is_in_plane_and_identity_without_parameters():
    gen = torch.Generator().manual_seed(0)
    none = Augmentation(rotate_deg=0, scale=(1, 1), translate=0, brightness=0, contrast=0)
    x = torch.randn(2, 1, 6, 16, 16)
    mean, std = torch.tensor([0.0]), torch.tensor([1.0])
    np.testing.assert_allclose(augment_batch(x, none, mean, std, gen), x, atol=1e-5)
    same = torch.randn(2, 1, 1, 16, 16).repeat(1, 1, 6, 1, 1)  # every slice identical
    out = augment_batch(same, Augmentation(), mean, std, gen)
    assert torch.allclose(out[:, :, :1].expand_as(out), out, atol=1e-5)  # slices stay identical
    assert not torch.allclose(out, same, atol=1e-3)


def test_unletterbox_inverts_letterbox_for_volumes():
    vol = torch.zeros(1, 10, 20, 30)
    vol[0, 3:6, 5:12, 10:20] = 1.0
    boxed = letterbox_resize(vol, [8, 16, 16])
    back = unletterbox(boxed[0].numpy(), (10, 20, 30))
    assert back.shape == (10, 20, 30)
    assert np.corrcoef(back.ravel(), vol[0].numpy().ravel())[0, 1] > 0.8
    assert peak_slice(back) in (3, 4, 5)
    tiles = [np.zeros((20, 30, 3), np.uint8)] * 10
    assert montage(tiles).shape[2] == 3
