"""The keys a classifier's ``model.json`` must carry, with their types and ranges.

Checked before a network is built or a file is opened, so a hand-edited or truncated
model.json gives one line naming the file and the key (``ScandxError``, exit 2), never
a traceback from deep inside model building or scoring. The shared keys (``task``,
``weights``, ``sha256``, an ensemble's members) are checked by
``scandx.core.predictor.read_model_json``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from scandx.core.predictor import require
from scandx.errors import ScandxError

TASKS = ("binary", "multiclass", "multilabel")
CALIBRATIONS = ("temperature", "vector_scaling", "none")


def _numbers(
    info: dict[str, Any], where: Path, key: str, length: int | None, positive: bool = False
) -> list[float]:
    values = require(info, where, key, list)
    ok = all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values
    )
    if not ok or (length is not None and len(values) != length):
        n = f"{length} " if length is not None else ""
        raise ScandxError(f"key {key!r} must be a list of {n}finite numbers", where)
    if positive and any(v <= 0 for v in values):
        raise ScandxError(f"key {key!r} must hold positive numbers", where)
    return values


def _finite(info: dict[str, Any], where: Path, key: str) -> float:
    value = require(info, where, key, float)
    if not math.isfinite(value):
        raise ScandxError(f"key {key!r} must be a finite number", where)
    return float(value)


def check_classifier_info(info: dict[str, Any], where: Path, *, single: bool = True) -> None:
    """Refuse a classifier model.json that lacks a key the Predictor reads or has one of
    the wrong type; ``single``: a model with its own weights (not an ensemble)."""
    task = require(info, where, "task", str)
    if task not in TASKS:
        raise ScandxError(f"key 'task' must be one of {', '.join(TASKS)}, not {task!r}", where)
    classes = require(info, where, "classes", list)
    if len(classes) < (1 if task == "multilabel" else 2) or not all(
        isinstance(c, str) for c in classes
    ):
        raise ScandxError("key 'classes' must be a list of class names (text)", where)
    if task == "binary":
        positive = require(info, where, "positive_class", str, optional=True)
        if positive is not None and positive not in classes:
            raise ScandxError(f"key 'positive_class' {positive!r} is not one of 'classes'", where)
    require(info, where, "model", str)
    require(info, where, "model_kwargs", dict, optional=True)
    dims = require(info, where, "spatial_dims", int)
    channels = require(info, where, "in_channels", int)
    if dims not in (2, 3) or channels < 1:
        raise ScandxError("'spatial_dims' (2 or 3) or 'in_channels' (>= 1) out of range", where)
    if require(info, where, "out_channels", int) != len(classes):
        raise ScandxError("key 'out_channels' must equal the number of classes", where)
    require(info, where, "input", dict)
    size = _numbers(info, where, "input.size", dims, positive=True)
    if not all(isinstance(v, int) for v in size):
        raise ScandxError("key 'input.size' must be whole numbers", where)
    _numbers(info, where, "input.mean", channels)
    _numbers(info, where, "input.std", channels, positive=True)
    require(info, where, "thresholds", dict)
    if task == "binary":
        _finite(info, where, "thresholds.positive")
    elif task == "multilabel":
        for c in classes:
            if not isinstance(info["thresholds"].get(c), int | float):
                raise ScandxError(f"key 'thresholds.{c}' is missing or not a number", where)
    _check_calibration(info, where, task, len(classes))
    ood = require(info, where, "ood", dict, optional=True)
    if ood:
        _finite(info, where, "ood.threshold")
        if single:
            require(info, where, "ood.file", str)
            require(info, where, "ood.sha256", str)


def _check_calibration(info: dict[str, Any], where: Path, task: str, k: int) -> None:
    cal = require(info, where, "calibration", dict, optional=True)
    if not cal:
        return
    method = require(info, where, "calibration.method", str)
    if method not in CALIBRATIONS:
        raise ScandxError(
            f"key 'calibration.method' must be one of {', '.join(CALIBRATIONS)}", where
        )
    if method == "vector_scaling":
        _numbers(info, where, "calibration.weight", k)
        _numbers(info, where, "calibration.bias", k)
    elif method == "temperature":
        if task == "multilabel":
            _numbers(info, where, "calibration.temperature", k, positive=True)
        elif _finite(info, where, "calibration.temperature") <= 0:
            raise ScandxError("key 'calibration.temperature' must be positive", where)
