"""Pretrained encoders: what ``scandx pretrain`` leaves for ``scandx train --init RUN``.

A pretraining run (``tasks/pretrain``) writes ``RUN/model/encoder.safetensors``: the
weights of the downstream network it trained (a classifier's backbone, or a segmenter)
under that network's own parameter names, without the parts that only served the
pretraining objective (projection head, decoder) and without the network's output
layer. ``RUN/model/model.json`` says what the encoder is (``info`` below). Any task's
engine loads it through ``apply_plan_init`` when its plan has ``init``: tensors are
matched by name and shape, and what was loaded is reported (a plan note and the log).

``info`` (``model.json`` keys ``method`` and ``network``):
    method:  "simclr" | "mae" | "autoencoder"
    network: {"family": "classifier"|"segmenter", "model", "model_kwargs",
              "spatial_dims", "in_channels", "input_size" (classifier) or "patch_size"}
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from scandx.core.predictor import sha256
from scandx.core.run_dir import atomic_path
from scandx.errors import ScandxError

log = logging.getLogger(__name__)

ENCODER_FILE = "encoder.safetensors"
KIND = "pretrained-encoder"


@dataclass
class PretrainedEncoder:
    run: Path
    state: dict[str, torch.Tensor]
    info: dict[str, Any]  # model.json of the pretraining run
    sha256: str

    @property
    def method(self) -> str:
        return str(self.info.get("method", "?"))

    @property
    def network(self) -> dict[str, Any]:
        return dict(self.info.get("network") or {})


def write_encoder(
    model_dir: str | Path, state: dict[str, torch.Tensor], info: dict[str, Any]
) -> str:
    """Write ``encoder.safetensors`` and ``model.json`` (``info`` + kind + sha256)
    atomically; returns the encoder's sha256."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in sorted(state.items())}
    with atomic_path(model_dir / ENCODER_FILE) as tmp:
        save_file(tensors, str(tmp))
    sha = sha256(model_dir / ENCODER_FILE)
    record = {**info, "kind": KIND, "encoder": ENCODER_FILE, "encoder_sha256": sha}
    with atomic_path(model_dir / "model.json") as tmp:
        Path(tmp).write_text(json.dumps(record, indent=2) + "\n")
    return sha


def read_encoder(run: str | Path) -> PretrainedEncoder:
    """The encoder of a pretraining run; one clear error for anything else."""
    run = Path(run)
    model_json = run / "model" / "model.json"
    enc = run / "model" / ENCODER_FILE
    if not run.is_dir():
        raise ScandxError("--init: no such run directory", run)
    if not model_json.exists() or not enc.exists():
        raise ScandxError(
            "--init: not a pretrained run (model/encoder.safetensors missing); make one "
            "with: scandx pretrain --data SRC --out RUN",
            run,
        )
    try:
        info = json.loads(model_json.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ScandxError(f"--init: unreadable model.json ({e})", model_json) from None
    if info.get("kind") != KIND:
        raise ScandxError(f"--init: model.json kind is {info.get('kind')!r}, not {KIND}", run)
    sha = sha256(enc)
    if info.get("encoder_sha256") not in (None, sha):
        raise ScandxError("--init: encoder.safetensors does not match its checksum", enc)
    try:
        state = load_file(str(enc))
    except (SafetensorError, OSError) as e:
        raise ScandxError(f"--init: unreadable encoder weights ({e})", enc) from None
    return PretrainedEncoder(run=run.resolve(), state=state, info=info, sha256=sha)


def _describe(net: dict[str, Any]) -> str:
    size = net.get("input_size") or net.get("patch_size")
    shape = "x".join(str(s) for s in size) if size else "?"
    return (
        f"{net.get('model')} ({net.get('family')}, {net.get('spatial_dims')}D, "
        f"{net.get('in_channels')} channel(s), {shape})"
    )


def check_fits(enc: PretrainedEncoder, **wanted: Any) -> None:
    """Refuse, naming every difference, an encoder whose network differs from the one a
    run needs (keys as in ``info["network"]``: family, model, spatial_dims, in_channels,
    input_size / patch_size; a key left out is not compared)."""
    net = enc.network
    diffs = [
        f"{k} {net.get(k)!r} (pretrained) vs {v!r} (this run)"
        for k, v in wanted.items()
        if v is not None and net.get(k) is not None and _norm(net.get(k)) != _norm(v)
    ]
    if diffs:
        raise ScandxError(
            f"--init: the pretrained encoder {_describe(net)} does not fit this run: "
            + "; ".join(diffs),
            enc.run,
        )


def _norm(v: Any) -> Any:
    return list(v) if isinstance(v, (list, tuple)) else v


def load_matching(model: torch.nn.Module, enc: PretrainedEncoder) -> dict[str, Any]:
    """Copy every encoder tensor whose name and shape match one of ``model``'s; returns
    {"loaded", "of", "new": [names left at their initialisation], "mismatched": [...]}.
    Nothing matching is an error naming the first differences."""
    own = model.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    mismatched: list[str] = []
    for name, t in enc.state.items():
        if name in own and tuple(own[name].shape) == tuple(t.shape):
            loaded[name] = t
        elif name in own:
            mismatched.append(f"{name} {list(t.shape)} vs {list(own[name].shape)}")
    if not loaded:
        detail = "; ".join(mismatched[:3]) or (
            f"no parameter names in common (encoder: {', '.join(sorted(enc.state)[:3])}...; "
            f"network: {', '.join(sorted(own)[:3])}...)"
        )
        raise ScandxError(
            f"--init: no tensor of the pretrained encoder {_describe(enc.network)} fits "
            f"this network: {detail}",
            enc.run,
        )
    model.load_state_dict(loaded, strict=False)
    new = [n for n in own if n not in loaded]
    return {"loaded": len(loaded), "of": len(own), "new": new, "mismatched": mismatched}


def init_record(enc: PretrainedEncoder, report: dict[str, Any]) -> dict[str, Any]:
    """What a plan's ``init`` stores: enough to reload and to check nothing changed."""
    return {
        "run": str(enc.run),
        "method": enc.method,
        "sha256": enc.sha256,
        "loaded": report["loaded"],
        "of": report["of"],
    }


def describe_init(record: dict[str, Any], report: dict[str, Any]) -> str:
    new = report["new"]
    shown = ", ".join(new[:4]) + (f" and {len(new) - 4} more" if len(new) > 4 else "")
    return (
        f"initialised from {record['run']} ({record['method']}): {record['loaded']} of "
        f"{record['of']} tensors loaded by name and shape" + (f"; new: {shown}" if new else "")
    )


def apply_plan_init(model: torch.nn.Module, plan: Any) -> None:
    """Load the plan's pretrained encoder (``plan.init``) into a freshly built model;
    nothing when the plan has none. The encoder must be the one planned with."""
    record = getattr(plan, "init", None)
    if not record:
        return
    enc = read_encoder(record["run"])
    if enc.sha256 != record.get("sha256"):
        raise ScandxError(
            "--init: the pretrained encoder changed since this run was planned "
            f"(sha256 {enc.sha256[:12]} vs {str(record.get('sha256'))[:12]})",
            record["run"],
        )
    report = load_matching(model, enc)
    log.info(describe_init(record, report))
