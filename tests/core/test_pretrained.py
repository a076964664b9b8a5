"""core/pretrained.py: encoder files, loading by name and shape, and the refusals."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from scandx.core.pretrained import (
    apply_plan_init,
    check_fits,
    init_record,
    load_matching,
    read_encoder,
    write_encoder,
)
from scandx.errors import ScandxError

NETWORK = {"family": "classifier", "model": "tiny", "spatial_dims": 2, "in_channels": 1,
           "input_size": [8, 8]}  # fmt: skip


def _net(in_channels: int = 1, classes: int = 2) -> nn.Module:
    return nn.Sequential(nn.Conv2d(in_channels, 4, 3), nn.Flatten(), nn.Linear(144, classes))


def _encoder(tmp_path, state=None):
    run = tmp_path / "pre"
    state = (
        state
        if state is not None
        else {k: v for k, v in _net().state_dict().items() if not k.startswith("2.")}
    )
    write_encoder(run / "model", state, {"method": "simclr", "network": NETWORK})
    return run


def test_matching_tensors_load_and_the_rest_is_reported_new(tmp_path):
    enc = read_encoder(_encoder(tmp_path))
    model = _net(classes=3)
    report = load_matching(model, enc)
    assert report["loaded"] == 2 and report["of"] == 4 and report["new"] == ["2.weight", "2.bias"]
    assert torch.equal(model.state_dict()["0.weight"], enc.state["0.weight"])
    record = init_record(enc, report)
    assert record["method"] == "simclr" and record["sha256"] == enc.sha256


def test_shape_differences_are_reported_and_nothing_in_common_is_one_line(tmp_path):
    enc = read_encoder(_encoder(tmp_path))
    report = load_matching(_net(in_channels=3), enc)  # the bias fits, the kernel does not
    assert report["loaded"] == 1
    assert report["mismatched"] == ["0.weight [4, 1, 3, 3] vs [4, 3, 3, 3]"]
    other = nn.Sequential(nn.Identity(), nn.Conv2d(3, 4, 3))  # "1.weight": no common name
    with pytest.raises(ScandxError, match="no parameter names in common"):
        load_matching(other, enc)


def test_fit_checks_name_every_difference(tmp_path):
    enc = read_encoder(_encoder(tmp_path))
    check_fits(enc, family="classifier", in_channels=1, input_size=[8, 8])
    with pytest.raises(ScandxError, match="in_channels 1 .* vs 3 .*input_size"):
        check_fits(enc, in_channels=3, input_size=[16, 16])


def test_not_a_pretrained_run_and_a_changed_file_are_refused(tmp_path):
    with pytest.raises(ScandxError, match="not a pretrained run"):
        read_encoder(tmp_path)
    run = _encoder(tmp_path)
    weights = run / "model" / "encoder.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(ScandxError, match="checksum"):
        read_encoder(run)


def test_the_engine_refuses_an_encoder_changed_since_planning(tmp_path):
    run = _encoder(tmp_path)
    enc = read_encoder(run)
    plan = SimpleNamespace(init=init_record(enc, {"loaded": 2, "of": 4}))
    apply_plan_init(_net(), plan)  # unchanged: loads
    _encoder(tmp_path, {"0.weight": torch.ones(4, 1, 3, 3), "0.bias": torch.ones(4)})
    with pytest.raises(ScandxError, match="changed since this run was planned"):
        apply_plan_init(_net(), plan)
    apply_plan_init(_net(), SimpleNamespace(init=None))  # no init: nothing to do
