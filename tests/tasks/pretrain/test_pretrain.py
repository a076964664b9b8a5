"""scandx pretrain (simclr, mae, autoencoder) and train --init for classification."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from scandx.cli import main
from scandx.core.pretrained import read_encoder, write_encoder
from scandx.core.task import Options
from scandx.tasks.classification.training.loop import build_model
from scandx.tasks.classification.workflow import manifest_and_plan
from scandx.tasks.pretrain.workflow import pretrain_run

FAST = {"time_budget_s": 3.0, "seed": 0, "model": "simple-cnn"}


@pytest.fixture(scope="module")
def runs(phantom_npz: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One short pretraining run per method on the phantom .npz."""
    root = tmp_path_factory.mktemp("pretrain-runs")
    out = {}
    for method in ("simclr", "mae", "autoencoder"):
        pretrain_run(phantom_npz, root / method, Options(**FAST), method)
        out[method] = root / method
    return out


@pytest.mark.parametrize("method", ["simclr", "mae", "autoencoder"])
def test_each_method_trains_and_writes_its_files(runs, method):
    run = runs[method]
    for name in ("plan.json", "manifest.csv", "log.jsonl", "train_summary.json"):
        assert (run / name).is_file()
    plan = json.loads((run / "plan.json").read_text())
    assert plan["task"] == "pretrain" and plan["method"] == method
    assert plan["family"] == "classifier" and plan["downstream_plan"]["model"] == "simple-cnn"
    assert json.loads((run / "log.jsonl").read_text().splitlines()[0])["epoch"] == 1
    enc = read_encoder(run)
    assert enc.method == method and enc.network["input_size"] == [28, 28]
    assert "head.4.weight" not in enc.state and "features.0.weight" in enc.state
    splits = {line.split(",")[3] for line in (run / "manifest.csv").read_text().splitlines()[1:]}
    assert splits == {"train", "val"}  # the test split is never read
    assert (run / "model" / "autoencoder.safetensors").exists() == (method == "autoencoder")


def test_train_init_loads_the_encoder_and_says_so(runs, phantom_npz):
    manifest, plan = manifest_and_plan(phantom_npz, time_budget_s=3, init=runs["mae"])
    assert plan.model == "simple-cnn" and plan.input_size == [28, 28]
    assert plan.init["loaded"] > 0 and plan.init["method"] == "mae"
    note = next(n for n in plan.notes if n.startswith("initialised from"))
    assert f"{plan.init['loaded']} of {plan.init['of']} tensors loaded" in note
    assert "new: head.4.weight, head.4.bias" in note  # the output layer starts new


def test_initialised_classifier_starts_with_exactly_the_encoder(runs, phantom_npz):
    from scandx.core.pretrained import apply_plan_init

    _, plan = manifest_and_plan(phantom_npz, time_budget_s=3, init=runs["simclr"])
    torch.manual_seed(0)
    model = build_model(plan)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    apply_plan_init(model, plan)
    encoder = load_file(str(runs["simclr"] / "model" / "encoder.safetensors"))
    for k, v in model.state_dict().items():
        expected = encoder.get(k, before[k])
        assert torch.equal(v, expected), k
    assert set(encoder) == set(before) - {"head.4.weight", "head.4.bias"}


def _fake_encoder(folder: Path, **network) -> Path:
    net = {
        "family": "classifier",
        "model": "simple-cnn",
        "model_kwargs": {},
        "spatial_dims": 2,
        "in_channels": 1,
        "input_size": [28, 28],
        **network,
    }
    write_encoder(folder / "model", {"features.0.weight": torch.zeros(32, 1, 3, 3)}, {
        "method": "simclr", "network": net,
    })  # fmt: skip
    return folder


@pytest.mark.parametrize(
    "network,named",
    [
        ({"input_size": [64, 64]}, "input_size [64, 64] (pretrained) vs [28, 28] (this run)"),
        ({"in_channels": 3}, "in_channels 3 (pretrained) vs 1 (this run)"),
        ({"spatial_dims": 3, "input_size": [8, 28, 28]}, "spatial_dims 3 (pretrained) vs 2"),
        ({"family": "segmenter"}, "family 'segmenter' (pretrained) vs 'classifier'"),
    ],
)
def test_an_encoder_that_does_not_fit_is_one_line(network, named, phantom_npz, tmp_path, capsys):
    enc = _fake_encoder(tmp_path / "pre", **network)
    out = tmp_path / "run"
    args = ["train", "--data", str(phantom_npz), "--out", str(out), "--init", str(enc)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err, err
    assert err.startswith("scandx: error:") and "--init: the pretrained encoder" in err
    assert not (out / "model").exists()


def test_a_folder_that_is_not_a_pretrained_run_is_one_line(phantom_npz, tmp_path, capsys):
    (tmp_path / "notrun").mkdir()
    args = ["train", "--data", str(phantom_npz), "--out", str(tmp_path / "r")]
    assert main([*args, "--init", str(tmp_path / "notrun")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--init: not a pretrained run" in err and len(err.splitlines()) == 1
