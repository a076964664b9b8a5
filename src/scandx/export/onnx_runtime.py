"""ONNX Runtime in place of a PyTorch network, behind the same Predictors.

``OnnxNetwork`` is a ``torch.nn.Module`` whose forward runs an ONNX Runtime session:
tensors in, tensors out, so the Predictors' shared code (``predict_logits``, test-time
augmentation, sliding windows, ``SegEnsemble``) calls it exactly as it calls the PyTorch
network. A classifier's graph also returns the input of its last linear layer; the
session hands it to ``penultimate_tap`` (an ``nn.Identity``), on which
``inference/ood.py`` hooks instead of the last ``nn.Linear``, so the OOD score is
computed by the same code for both runtimes.

``onnx_networks(run, device)`` checks the export against the run before any session
is built: a missing export, a model retrained after it (model.json weights sha256 no
longer the one exported) and a graph changed after it (its sha256) are each refused
with one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from scandx.core.predictor import ensemble_members, read_model_json, sha256
from scandx.errors import ScandxError
from scandx.export.onnx_export import EXPORT_FORMAT, EXPORT_JSON, default_export_dir

RUNTIMES = ("torch", "onnx")


def check_runtime(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise ScandxError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    return runtime


def _providers(device: str) -> list[str]:
    import onnxruntime as ort

    if str(device).startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxNetwork(nn.Module):
    """An ONNX graph behind a PyTorch module's call: ``image`` in, ``logits`` out (and,
    for a classifier, ``features`` passed through ``penultimate_tap``)."""

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # warnings about unused initialisers are noise here
        self.session = ort.InferenceSession(
            str(path), sess_options=options, providers=_providers(device)
        )
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.penultimate_tap = nn.Identity()
        self.path = Path(path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feed = {"image": np.ascontiguousarray(x.detach().cpu().float().numpy())}
        results = dict(zip(self.outputs, self.session.run(None, feed), strict=True))
        if "features" in results:  # what a forward hook on the last linear layer sees
            self.penultimate_tap(torch.from_numpy(results["features"]))
        return torch.from_numpy(results["logits"]).to(x.device)


def read_export(run: str | Path) -> dict[str, Any]:
    """``RUN/export/onnx/export.json``, or one line saying how to make it."""
    folder = default_export_dir(run)
    path = folder / EXPORT_JSON
    if not path.is_file():
        raise ScandxError(
            "no ONNX export of this run; run scandx export RUN --format onnx first", Path(run)
        )
    try:
        record = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ScandxError(f"not valid JSON ({e})", path) from None
    if not isinstance(record, dict) or record.get("format") != EXPORT_FORMAT:
        raise ScandxError(f"not a {EXPORT_FORMAT} export record", path)
    if not isinstance(record.get("graphs"), list):
        raise ScandxError("key 'graphs' must be a list", path)
    return record


def onnx_networks(run: str | Path, device: str = "cpu") -> dict[Path, OnnxNetwork]:
    """A session per model folder the run's Predictor uses (resolved path -> network),
    each graph checked against export.json and export.json against the model folders."""
    run = Path(run)
    record = read_export(run)
    where = default_export_dir(run) / EXPORT_JSON
    stale = "the model was retrained after export; run scandx export RUN --format onnx again"
    info = read_model_json(run / "model")
    if record.get("model_sha256") != info["sha256"]:
        raise ScandxError(f"ONNX export is stale: {stale}", where)
    by_dir = {}
    for i, g in enumerate(record["graphs"]):
        if not isinstance(g, dict) or not all(
            isinstance(g.get(k), str) for k in ("file", "model_dir", "weights_sha256", "sha256")
        ):
            raise ScandxError(f"graphs[{i}] needs file, model_dir, weights_sha256, sha256", where)
        by_dir[(run / g["model_dir"]).resolve()] = g
    dirs = ensemble_members(run / "model", info) if "ensemble" in info else [run / "model"]
    networks = {}
    for d in dirs:
        g = by_dir.get(Path(d).resolve())
        if g is None:
            raise ScandxError(f"ONNX export has no graph for {Path(d).name}: {stale}", where)
        if read_model_json(Path(d))["sha256"] != g["weights_sha256"]:
            raise ScandxError(f"ONNX export is stale ({g['file']}): {stale}", where)
        graph = default_export_dir(run) / Path(g["file"]).name
        if not graph.is_file():
            raise ScandxError("ONNX graph missing (named in export.json)", graph)
        if sha256(graph) != g["sha256"]:
            raise ScandxError("ONNX graph does not match the sha256 in export.json", graph)
        networks[Path(d).resolve()] = OnnxNetwork(graph, device)
    return networks
