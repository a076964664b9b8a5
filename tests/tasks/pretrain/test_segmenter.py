"""Segmenter pretraining (tasks/pretrain/segmenter.py): the encoder written under the
segmenter's own names, the objectives, resume, and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from scandx.core.pretrained import read_encoder
from scandx.core.run_dir import RunDir
from scandx.core.task import Options
from scandx.errors import ScandxError
from scandx.tasks.pretrain.plan import PretrainPlan
from scandx.tasks.pretrain.segmenter import pretrain_segmenter
from scandx.tasks.pretrain.segmenter_objectives import block_mask, corrupt, reconstruction_loss
from scandx.tasks.segmentation.plan import SegPlan
from scandx.tasks.segmentation.predictor import build_seg_model
from scandx.tasks.segmentation.synthetic import make_ellipse_folders


def pretrain(data: Path, out: Path, how: str, **options) -> dict:
    run = RunDir(out)
    with run.hold():  # as the CLI holds it
        return pretrain_segmenter(data, run, Options(seed=0, **options), how)


@pytest.fixture(scope="module")
def seg_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_ellipse_folders(tmp_path_factory.mktemp("segpre") / "data", n=8, size=32)


@pytest.fixture(scope="module")
def pretrained_mae(seg_data: Path) -> Path:
    """A 2D DynUNet pretrained with mae on 32 px ellipses (a few seconds)."""
    out = seg_data.parent / "mae"
    pretrain(seg_data, out, "mae", time_budget_s=2)
    return out


def test_mae_writes_the_segmenters_encoder_without_its_output_layer(pretrained_mae):
    enc = read_encoder(pretrained_mae)
    plan = PretrainPlan.load(pretrained_mae / "plan.json")
    assert plan.task == "pretrain" and plan.family == "segmenter" and plan.method == "mae"
    seg = SegPlan.from_dict(plan.downstream_plan)
    own = build_seg_model(seg).state_dict()  # the segmenter that train --init builds
    assert enc.state and set(enc.state) <= set(own)
    assert not any(k.startswith("output_block") for k in enc.state)
    assert all(tuple(own[k].shape) == tuple(t.shape) for k, t in enc.state.items())
    assert enc.network["family"] == "segmenter" and enc.network["patch_size"] == seg.patch_size
    assert enc.method == "mae"
    log = [json.loads(line) for line in (pretrained_mae / "log.jsonl").read_text().splitlines()]
    assert log and all("val_loss" in r for r in log if r["validated"])
    summary = json.loads((pretrained_mae / "train_summary.json").read_text())
    assert summary["encoder_tensors"] == len(enc.state)
    assert any("labels ignored" in n for n in plan.notes)
    splits = (pretrained_mae / "manifest.csv").read_text()
    assert ",val," in splits and ",test," not in splits


def test_autoencoder_pretrains_with_a_corrupted_input(seg_data, tmp_path):
    out = tmp_path / "ae"
    summary = pretrain(seg_data, out, "autoencoder", time_budget_s=1)
    assert summary["method"] == "autoencoder" and summary["encoder_tensors"] > 0
    notes = json.loads((out / "plan.json").read_text())["notes"]
    assert any("identity" in n for n in notes)  # why the input is corrupted
    x = torch.randn(2, 1, 16, 16)
    plan = PretrainPlan(method="autoencoder", network={"model": "dynunet", "spatial_dims": 2,
                        "in_channels": 1}, mask_patch=4)  # fmt: skip
    inp, target = corrupt(x, "autoencoder", plan, torch.Generator().manual_seed(0))
    assert (inp != x).float().mean() > 0.9 and bool((target[:, 1] == 1).all())
    assert torch.equal(target[:, :1], x)


def test_mae_mask_hides_its_share_and_the_loss_sees_only_the_hidden_voxels():
    gen = torch.Generator().manual_seed(0)
    m = block_mask((3, 1, 32, 32), 8, 0.5, gen)
    assert m.shape == (3, 1, 32, 32) and [float(v) for v in m.mean((1, 2, 3))] == [0.5] * 3
    x = torch.randn(3, 1, 32, 32)
    target = torch.cat([x, m], 1)
    visible_wrong = x + 5 * (1 - m)  # wrong only where visible: no loss
    assert float(reconstruction_loss(visible_wrong, target)) == pytest.approx(0.0)
    assert float(reconstruction_loss(x + 1, target)) == pytest.approx(1.0)


def test_resume_continues_the_pretraining(seg_data, tmp_path):
    out = tmp_path / "res"

    def interrupt(epoch, record):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain(seg_data, out, "mae", time_budget_s=3, hooks=[interrupt])
    first = (out / "log.jsonl").read_text().splitlines()
    assert len(first) == 1 and not (out / "model").exists()
    with pytest.raises(ScandxError, match="already holds a run"):
        pretrain(seg_data, out, "mae", time_budget_s=3)
    with pytest.raises(ScandxError, match="pretrains with mae"):
        pretrain(seg_data, out, "mae", resume=True, method="autoencoder")
    summary = pretrain(seg_data, out, "mae", resume=True)
    lines = (out / "log.jsonl").read_text().splitlines()
    assert lines[0] == first[0] and [json.loads(r)["epoch"] for r in lines] == list(
        range(1, len(lines) + 1)
    )
    assert summary["epochs_run"] == len(lines) and read_encoder(out).state


def test_simclr_pretrains_the_encoder_half_under_the_segmenters_names(seg_data, tmp_path):
    out = tmp_path / "simclr"
    pretrain(seg_data, out, "simclr", time_budget_s=1)
    enc = read_encoder(out)
    seg = SegPlan.from_dict(PretrainPlan.load(out / "plan.json").downstream_plan)
    own = build_seg_model(seg).state_dict()
    assert set(enc.state) <= set(own)
    assert all(tuple(own[k].shape) == tuple(t.shape) for k, t in enc.state.items())
    assert any(k.startswith("bottleneck.") for k in enc.state)
    assert any(k.startswith("skip_layers.") for k in enc.state)  # DynUNet's aliases too
    assert not any(k.startswith(("upsamples.", "output_block", "projection")) for k in enc.state)
    loss = [json.loads(r)["val_loss"] for r in (out / "log.jsonl").read_text().splitlines()]
    assert all(v == v and v > 0 for v in loss)  # NT-Xent, finite


def test_an_unknown_method_is_refused_naming_what_works(seg_data, tmp_path):
    with pytest.raises(ScandxError) as e:
        pretrain(seg_data, tmp_path / "s", "byol")
    assert "mae, autoencoder, simclr" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "s").exists()
