"""``scandx serve --runtime onnx`` answers what the PyTorch runtime answers (within
1e-4), and refuses to start on a run that was never exported."""

from __future__ import annotations

import shutil

import pytest
from fastapi.testclient import TestClient

from scandx.cli import main
from scandx.errors import ScandxError
from scandx.serve.app import ServiceState, create_app
from scandx.serve.config import ServeConfig


def _answer(config: ServeConfig, data: bytes) -> dict:
    with TestClient(create_app(config)) as client:
        r = client.post(
            "/v1/models/m/predict", files={"file": ("x.dcm", data, "application/dicom")}
        )
    assert r.status_code == 200, r.text
    return r.json()


def test_onnx_runtime_matches_torch_through_the_api(quick_run, phantoms, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(quick_run, run)
    db = f"sqlite:///{tmp_path / 'serve.db'}"
    with pytest.raises(ScandxError, match="scandx export"):
        ServiceState(ServeConfig(runs=[f"m={run}"], db=db, runtime="onnx")).start()
    assert main(["-q", "export", str(run), "--format", "onnx"]) == 0
    data = next(phantoms.rglob("*.dcm")).read_bytes()
    torch_answer = _answer(ServeConfig(runs=[f"m={run}"], db=db), data)
    onnx_answer = _answer(ServeConfig(runs=[f"m={run}"], db=db, runtime="onnx"), data)
    assert onnx_answer["model"]["runtime"] == "onnx"
    assert onnx_answer["model"]["weights_sha256"] == torch_answer["model"]["weights_sha256"]
    a, b = torch_answer["predictions"][0], onnx_answer["predictions"][0]
    for c, p in a["probabilities"].items():
        assert b["probabilities"][c] == pytest.approx(p, abs=1e-4)
    assert b["ood_score"] == pytest.approx(a["ood_score"], abs=1e-4)
    assert b["label"] == a["label"]
