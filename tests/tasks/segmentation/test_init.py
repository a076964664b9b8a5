"""``scandx train --init RUN`` for segmentation (tasks/segmentation/pretrained_init.py):
the U-Net starts from a pretrained segmenter; encoders that do not fit get one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from scandx.cli import main
from scandx.core.pretrained import apply_plan_init, read_encoder, write_encoder
from scandx.errors import ScandxError
from scandx.tasks.segmentation import workflow
from scandx.tasks.segmentation.plan import SegPlan
from scandx.tasks.segmentation.predictor import build_seg_model
from scandx.tasks.segmentation.synthetic import make_ellipsoid_decathlon
from scandx.tasks.segmentation.workflow import seg_plan_run, seg_train_run
from tests.tasks.pretrain.test_segmenter import pretrained_mae, seg_data  # noqa: F401


def test_train_init_starts_the_unet_from_the_pretrained_encoder(
    seg_data,  # noqa: F811
    pretrained_mae,  # noqa: F811
    tmp_path,
):
    run = tmp_path / "run"
    args = ["-q", "train", "--data", seg_data, "--out", run, "--time-budget", "2"]
    assert main([str(a) for a in [*args, "--init", pretrained_mae]]) == 0
    plan = SegPlan.load(run / "plan.json")
    enc = read_encoder(pretrained_mae)
    assert plan.init["loaded"] == len(enc.state) > 0 and plan.init["sha256"] == enc.sha256
    assert plan.patch_size == enc.network["patch_size"]
    note = next(n for n in plan.notes if n.startswith("initialised from"))
    assert "new: output_block" in note  # the output layer is the new run's own
    model = build_seg_model(plan)
    apply_plan_init(model, plan)  # what the engine does to every fresh network
    own = model.state_dict()
    assert all(torch.equal(own[k], t) for k, t in enc.state.items())
    assert (run / "model" / "model.json").exists()


def test_a_classifier_encoder_is_refused_in_one_line(seg_data, tmp_path):  # noqa: F811
    pre = tmp_path / "clf"
    network = {"family": "classifier", "model": "resnet18", "spatial_dims": 2,
               "in_channels": 1, "input_size": [64, 64]}  # fmt: skip
    write_encoder(pre / "model", {"fc.weight": torch.zeros(2, 2)}, {"method": "simclr",
                  "network": network})  # fmt: skip
    with pytest.raises(ScandxError) as e:
        seg_train_run(seg_data, tmp_path / "run", init=pre)
    assert "classifier" in e.value.reason and "not a segmenter" in e.value.reason
    assert not (tmp_path / "run").exists()


def _two_channel_decathlon(root: Path) -> Path:
    data = make_ellipsoid_decathlon(root, n_train=4, n_test=0, shape=(16, 16, 16))
    for f in sorted((data / "imagesTr").glob("*_0000.nii.gz")):
        shutil.copy(f, f.with_name(f.name.replace("_0000", "_0001")))
    spec = json.loads((data / "dataset.json").read_text())
    spec["modality"] = {"0": "T1", "1": "FLAIR"}
    (data / "dataset.json").write_text(json.dumps(spec))
    return data


def test_another_channel_count_is_refused_before_any_case_is_read(
    pretrained_mae,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    data = _two_channel_decathlon(tmp_path / "brats_like")

    def no_reading(*a, **k):
        raise AssertionError("the cases were read")

    monkeypatch.setattr(workflow, "seg_fingerprint", no_reading)
    with pytest.raises(ScandxError) as e:
        seg_train_run(data, tmp_path / "run", init=pretrained_mae)
    assert "in_channels 1 (pretrained) vs 2 (this run)" in e.value.reason


def test_a_2d_encoder_for_a_3d_plan_names_the_difference(
    pretrained_mae,  # noqa: F811
    tmp_path,
):
    data = make_ellipsoid_decathlon(tmp_path / "vol", n_train=4, n_test=0, shape=(16, 16, 16))
    with pytest.raises(ScandxError) as e:
        seg_plan_run(data, time_budget_s=5, init=pretrained_mae)
    assert "spatial_dims 2 (pretrained) vs 3 (this run)" in e.value.reason
    assert "--dims 2" in e.value.reason
    plan = seg_plan_run(data, time_budget_s=5, dims=2, init=pretrained_mae)
    assert plan.slice_axis is not None and plan.init["loaded"] > 0


def test_resume_with_another_init_is_refused(tmp_path):
    plan = SegPlan(labels={"0": "bg", "1": "fg"}, init={"run": str(tmp_path / "a")})
    from scandx.tasks.segmentation.pretrained_init import check_resumed_init

    check_resumed_init(plan, tmp_path / "a")
    with pytest.raises(ScandxError, match="planned with --init"):
        check_resumed_init(plan, tmp_path / "b")


def test_folds_start_every_fold_from_the_encoder(seg_data, pretrained_mae):  # noqa: F811
    from scandx.core.task import Options
    from scandx.tasks.segmentation.cross_validation import prepare

    setup = prepare(seg_data, 2, Options(init=pretrained_mae, time_budget_s=4), None)
    assert setup.plan.init["loaded"] > 0  # the engine loads it into each fold's network
    assert setup.plan.patch_size == read_encoder(pretrained_mae).network["patch_size"]
