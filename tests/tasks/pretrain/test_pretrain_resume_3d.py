"""Pretraining resumes exactly (every method) and works on volumes (a 3D network, then
``train --init`` on the same volumes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from scandx.cli import main
from scandx.core.engine import fit
from scandx.core.run_dir import RunDir
from scandx.tasks.classification.data.synthetic import make_phantom_volumes
from scandx.tasks.pretrain.plan import PretrainPlan
from scandx.tasks.pretrain.training import PretrainTraining


class Interrupt(Exception):
    pass


def _plan(method: str) -> PretrainPlan:
    network = {
        "family": "classifier",
        "model": "simple-cnn",
        "model_kwargs": {},
        "spatial_dims": 2,
        "in_channels": 1,
        "input_size": [16, 16],
        "intensity_mean": [0.5],
        "intensity_std": [0.25],
    }
    return PretrainPlan(
        method=method, network=network, epochs=3, batch_size=8, mask_patch=4, code_dim=16
    ).validate()


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["model"]


@pytest.mark.parametrize("method", ["simclr", "mae", "autoencoder"])
def test_an_interrupted_pretraining_resumes_to_the_same_weights(method, tmp_path):
    g = torch.Generator().manual_seed(1)
    x_tr, x_va = torch.rand(24, 1, 16, 16, generator=g), torch.rand(8, 1, 16, 16, generator=g)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    fit(PretrainTraining(_plan(method), x_tr, x_va), RunDir(whole))

    def stop_after_first_epoch(epoch: int, record: dict) -> None:
        if epoch == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        task = PretrainTraining(_plan(method), x_tr, x_va)
        fit(task, RunDir(cut), hooks=[stop_after_first_epoch])
    fit(PretrainTraining(_plan(method), x_tr, x_va), RunDir(cut), resume=True)
    a, b = _weights(whole), _weights(cut)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    losses = [
        [json.loads(line)["val_loss"] for line in (run / "log.jsonl").read_text().splitlines()]
        for run in (whole, cut)
    ]
    assert losses[0] == losses[1] and len(losses[0]) == 3


def test_volumes_pretrain_a_3d_network_that_train_init_loads(tmp_path):
    volumes = make_phantom_volumes(tmp_path / "vol", n_patients=24, size=16, depth=8)
    pre, run = tmp_path / "pre", tmp_path / "run"
    common = ["--time-budget", "4", "--model", "simple-cnn"]
    assert main(["-q", "pretrain", "--data", str(volumes), "--out", str(pre),
                 "--method", "autoencoder", *common]) == 0  # fmt: skip
    network = json.loads((pre / "plan.json").read_text())["network"]
    assert network["spatial_dims"] == 3 and len(network["input_size"]) == 3
    assert main(["-q", "train", "--data", str(volumes), "--out", str(run),
                 "--init", str(pre), *common]) == 0  # fmt: skip
    plan = json.loads((run / "plan.json").read_text())
    assert plan["spatial_dims"] == 3 and plan["init"]["loaded"] > 0
    assert plan["init"]["loaded"] == plan["init"]["of"] - 2  # all but the output layer
