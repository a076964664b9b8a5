"""``RUN/model/``: weights as safetensors plus ``model.json``, which carries the
labels, the input contract, the operating thresholds and a checksum, so the
weights describe themselves and nothing is unpickled on load."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from scandx import __version__
from scandx.core.predictor import checked_file, checked_weights, read_model_json, sha256
from scandx.core.run_dir import atomic_write
from scandx.errors import ScandxError
from scandx.models import create_model
from scandx.tasks.classification.data.images import InputContract
from scandx.tasks.classification.inference.model_schema import check_classifier_info
from scandx.tasks.classification.plan import Plan
from scandx.tasks.classification.positive import positive_of

WEIGHTS = "weights.safetensors"
MODEL_JSON = "model.json"
OOD_FILE = "ood.safetensors"


def contract_of(plan: Plan) -> InputContract:
    return InputContract(
        spatial_dims=plan.spatial_dims,
        channels=plan.in_channels,
        size=list(plan.input_size),
        mean=list(plan.intensity_mean),
        std=list(plan.intensity_std),
    )


def save_model(
    model_dir: Path,
    model: torch.nn.Module,
    plan: Plan,
    thresholds: dict[str, Any],
    extra: dict[str, Any],
    ood_tensors: dict[str, torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Write weights + model.json; returns the model.json content."""
    model_dir.mkdir(parents=True, exist_ok=True)
    weights = model_dir / WEIGHTS
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(weights))
    if ood_tensors is not None:  # checksummed like the weights (model.json ood.sha256)
        save_file({k: v.contiguous() for k, v in ood_tensors.items()}, str(model_dir / OOD_FILE))
        extra = {**extra, "ood": {**extra["ood"], "file": OOD_FILE}}
        extra["ood"]["sha256"] = sha256(model_dir / OOD_FILE)
    info = {
        "format": "scandx-model/1",
        "scandx_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "task": plan.task,
        "classes": list(plan.classes),
        "positive_class": positive_of(plan),
        "model": plan.model,
        "model_kwargs": plan.model_kwargs,
        "spatial_dims": plan.spatial_dims,
        "in_channels": plan.in_channels,
        "out_channels": len(plan.classes),
        "input": contract_of(plan).to_dict(),
        "thresholds": thresholds,
        "weights": WEIGHTS,
        "sha256": sha256(weights),
        **extra,
    }
    atomic_write(model_dir / MODEL_JSON, json.dumps(info, indent=2) + "\n")
    return info


def load_model(model_dir: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the network from model.json and load its checked weights (and the
    checked OOD statistics): every file model.json names must lie inside ``model_dir``
    and match the sha256 recorded at training time."""
    info = read_model_json(model_dir)
    if "ensemble" in info:
        raise ScandxError(
            "an ensemble has no single network; use scandx.core.predictor.load_predictor", model_dir
        )
    check_classifier_info(info, Path(model_dir) / MODEL_JSON)
    weights = checked_weights(model_dir, info)
    try:
        model = create_model(
            info["model"],
            info["spatial_dims"],
            info["in_channels"],
            info["out_channels"],
            input_size=info["input"]["size"],
            **(info.get("model_kwargs") or {}),
        )
    except TypeError as e:  # a model_kwargs key the network does not take
        raise ScandxError(
            f"key 'model_kwargs' does not fit {info['model']!r}: {e}", Path(model_dir) / MODEL_JSON
        ) from None
    try:
        model.load_state_dict(load_file(str(weights)))
    except (RuntimeError, ValueError) as e:  # shapes or names that do not fit model.json
        reason = str(e)[:200]
        raise ScandxError(f"weights do not fit the model.json network: {reason}", weights) from None
    model.eval()
    if info.get("ood"):
        ood = info["ood"]
        ood_path = checked_file(model_dir, ood["file"], ood["sha256"], "ood.file")
        info["ood_tensors"] = load_file(str(ood_path))
    return model, info
