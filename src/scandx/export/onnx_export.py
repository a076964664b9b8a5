"""``scandx export RUN --format onnx``: the run's network(s) as ONNX graphs.

One graph per network the Predictor runs: ``model.onnx`` for a single model (a
classification ``SeedEnsemble`` is one network, so one graph), ``fold<i>.onnx`` for each
member of a ``train --folds`` ensemble. Everything around the network (preprocessing,
calibration, thresholds, test-time augmentation, the OOD score, sliding windows,
post-processing) stays in the Predictor, which runs the graph in place of the PyTorch
network (``export.onnx_runtime``), so both runtimes share every line of it.

Graphs (legacy TorchScript-based exporter, opset ``OPSET``):

- classifier: input ``image`` (N, C, *size) -> ``logits`` (N, K) and ``features``
  (N, D), the input of the last linear layer (what ``inference/ood.py`` captures with a
  forward hook for the OOD score); dynamic batch axis;
- segmenter: input ``image`` (N, C, *spatial) -> ``logits`` (N, K, *spatial); dynamic
  batch and spatial axes (sliding windows are one patch, but a graph that takes any
  size is not tied to the plan's window).

``export.json`` records per graph the model folder it came from, that folder's
model.json weights ``sha256``, the graph's own sha256 and the largest difference from
PyTorch measured at export; the whole folder is written beside its final place and
swapped in only when complete (``RunDir.atomic_folder``).
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from scandx import __version__
from scandx.core.predictor import ensemble_members, read_model_json, sha256
from scandx.core.run_dir import RunDir
from scandx.errors import ScandxError

log = logging.getLogger(__name__)

OPSET = 17
EXPORT_FORMAT = "scandx-onnx/1"
EXPORT_JSON = "export.json"
MAX_EXPORT_DIFF = 1e-4  # largest |ONNX Runtime - PyTorch| accepted on the export check


def default_export_dir(run: str | Path) -> Path:
    """Where ``scandx export RUN --format onnx`` writes and ``runtime="onnx"`` reads."""
    return Path(run) / "export" / "onnx"


class _WithFeatures(nn.Module):
    """A classifier returning (logits, input of its last linear layer), so the graph
    carries what the OOD score's forward hook captures from the PyTorch network."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        from scandx.tasks.classification.inference.ood import _last_linear

        self.model = model
        self.last = _last_linear(model)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        captured: list[torch.Tensor] = []
        hook = self.last.register_forward_hook(lambda _m, inp, _o: captured.append(inp[0]))
        try:
            logits = self.model(x)
        finally:
            hook.remove()
        return logits, captured[-1].flatten(1)


def _has_linear(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Linear) for m in model.modules())


def _networks(run: Path) -> tuple[str, list[dict[str, Any]]]:
    """(task, [{model_dir, info, model, example, kind}]) for every network of the run."""
    info = read_model_json(run / "model")
    dirs = ensemble_members(run / "model", info) if "ensemble" in info else [run / "model"]
    out = []
    if info["task"] == "segmentation":
        from scandx.tasks.segmentation.plan import SegPlan
        from scandx.tasks.segmentation.predictor import _load_member

        plan = SegPlan.load(run / "plan.json")
        for d in dirs:
            example = torch.randn(2, plan.in_channels, *plan.patch_size, generator=_gen())
            out.append(
                {"model_dir": d, "model": _load_member(d, plan), "kind": "segmenter", "x": example}
            )
    else:
        from scandx.tasks.classification.inference.model_io import load_model

        for d in dirs:
            model, member = load_model(d)
            size = member["input"]["size"]
            example = torch.randn(2, member["input"]["channels"], *size, generator=_gen())
            out.append({"model_dir": d, "model": model, "kind": "classifier", "x": example})
    return info["task"], out


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _export_graph(model: nn.Module, kind: str, x: torch.Tensor, path: Path) -> list[str]:
    """Write one graph; returns its output names."""
    model = model.eval()
    if kind == "classifier" and _has_linear(model):
        net: nn.Module = _WithFeatures(model)
        outputs = ["logits", "features"]
        axes = {name: {0: "batch"} for name in ["image", *outputs]}
    else:
        net, outputs = model, ["logits"]
        spatial = {0: "batch"}
        if kind == "segmenter":
            spatial.update({i: f"dim{i - 2}" for i in range(2, x.ndim)})
        axes = {"image": spatial, "logits": spatial}
    # the wrapper too in eval mode: the exporter reads the top module's flag and exported
    # batch norm with batch statistics otherwise (logits off by ~1 on simple-cnn)
    net.eval()
    with warnings.catch_warnings():  # tracer notes about Python-side shape arithmetic
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (x,),
            str(path),
            input_names=["image"],
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    return outputs


def _check_graph(model: nn.Module, kind: str, x: torch.Tensor, path: Path) -> float:
    """Largest |ONNX Runtime - PyTorch| on the example batch and on one image of it: the
    logits and, for a classifier, the penultimate features as the OOD score takes them."""
    from scandx.export.onnx_runtime import OnnxNetwork
    from scandx.tasks.classification.inference.ood import capturing_penultimate

    session = OnnxNetwork(path)
    worst = 0.0
    for batch in (x, x[:1]):
        with torch.no_grad():
            pairs = [(model(batch).float(), session(batch))]
            if kind == "classifier" and _has_linear(model):
                with capturing_penultimate(model) as want, capturing_penultimate(session) as got:
                    model(batch), session(batch)
                pairs.append((torch.cat(want), torch.cat(got)))
        worst = max(worst, *(float((a - b).abs().max()) for a, b in pairs))
    return worst


def export_onnx(run: str | Path, out: str | Path | None = None) -> Path:
    """Export the run's network(s) to ONNX in ``out`` (default ``RUN/export/onnx``);
    returns the folder. Raises ``ScandxError`` for a folder that holds no trained model."""
    run_dir = RunDir(run)
    if not run_dir.path.is_dir():
        raise ScandxError("no such run folder", run_dir.path)
    read_model_json(run_dir.path / "model")  # a trained run, before anything is written
    final = Path(out) if out is not None else default_export_dir(run_dir.path)
    with run_dir.hold(create=False):
        task, networks = _networks(run_dir.path)
        root = run_dir.path.resolve()
        graphs = []
        final.parent.mkdir(parents=True, exist_ok=True)
        with run_dir.atomic_folder(final) as partial:
            for i, net in enumerate(networks):
                name = "model.onnx" if len(networks) == 1 else f"fold{i}.onnx"
                path = partial / name
                outputs = _export_graph(net["model"], net["kind"], net["x"], path)
                diff = _check_graph(net["model"], net["kind"], net["x"], path)
                if not diff <= MAX_EXPORT_DIFF:
                    raise ScandxError(
                        f"ONNX graph differs from PyTorch by {diff:.2e} (> {MAX_EXPORT_DIFF}); "
                        "not exported",
                        net["model_dir"],
                    )
                member = read_model_json(net["model_dir"])
                graphs.append(
                    {
                        "file": name,
                        "model_dir": net["model_dir"].resolve().relative_to(root).as_posix(),
                        "weights_sha256": member["sha256"],
                        "sha256": sha256(path),
                        "kind": net["kind"],
                        "inputs": ["image"],
                        "outputs": outputs,
                        "max_abs_diff_at_export": diff,
                    }
                )
                log.info("exported %s (max |onnx - torch| %.2e)", name, diff)
            info = read_model_json(run_dir.path / "model")
            record = {
                "format": EXPORT_FORMAT,
                "task": task,
                "model_sha256": info["sha256"],
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "scandx_version": __version__,
                "torch_version": torch.__version__,
                "opset": OPSET,
                "graphs": graphs,
            }
            (partial / EXPORT_JSON).write_text(json.dumps(record, indent=2) + "\n")
    return final
