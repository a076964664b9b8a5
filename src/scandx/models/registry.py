"""Networks created by name. Every model takes (N, C, *spatial); a classifier returns
logits (N, K) and has ``forward_features(x)`` (its last feature map), a segmenter
logits per voxel, an autoencoder the reconstruction of its input.

Builders take ``spatial_dims``, ``in_channels``, ``out_channels``, ``input_size``
(the plan's, so flatten sizes follow it) and their own keyword arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from scandx.errors import ScandxError

Builder = Callable[..., nn.Module]
_MODELS: dict[str, Builder] = {}
_MIN_SIZE: dict[str, int] = {}


_KIND: dict[str, str] = {}
KINDS = ("classifier", "segmenter", "autoencoder")


def register_model(
    name: str, min_size: int = 8, kind: str = "classifier"
) -> Callable[[Builder], Builder]:
    """Register a builder; ``min_size`` is the smallest spatial edge it accepts; ``kind``
    is "classifier" (logits per image), "segmenter" (logits per voxel) or "autoencoder"
    (a reconstruction of the input, ``models/autoencoder.py``)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")

    def wrap(fn: Builder) -> Builder:
        _MODELS[name] = fn
        _MIN_SIZE[name] = min_size
        _KIND[name] = kind
        return fn

    return wrap


def check_model_name(name: str) -> str:
    """``name`` when a model of that name is registered; else ScandxError naming the
    registered ones (a misspelt ``--model resnet-18`` is one line, not a KeyError)."""
    _load_builtin()
    if name not in _MODELS:
        raise ScandxError(f"unknown model {name!r}; known: {', '.join(sorted(_MODELS))}")
    return name


def model_kind(name: str) -> str:
    return _KIND[check_model_name(name)]


def list_models(kind: str | None = None) -> list[str]:
    _load_builtin()
    return sorted(n for n in _MODELS if kind is None or _KIND[n] == kind)


def create_model(
    name: str,
    spatial_dims: int = 2,
    in_channels: int = 1,
    out_channels: int = 2,
    input_size: list[int] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model; ScandxError for an unknown name. ``members=k`` (k > 1)
    gives a ``SeedEnsemble`` of k copies."""
    check_model_name(name)
    size = list(input_size) if input_size else [64] * spatial_dims
    if len(size) != spatial_dims:
        raise ScandxError(f"input_size {size} does not match spatial_dims={spatial_dims}")
    if min(size) < _MIN_SIZE[name]:
        raise ScandxError(
            f"model {name!r} needs inputs of at least {_MIN_SIZE[name]} pixels per edge; "
            f"the plan's input_size is {size}"
        )
    members = int(kwargs.pop("members", 1))
    nets = [
        _MODELS[name](
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=out_channels,
            input_size=size,
            **kwargs,
        )
        for _ in range(members)
    ]
    return nets[0] if members == 1 else SeedEnsemble(nets)


class SeedEnsemble(nn.Module):
    """``members`` copies of one network trained from different seeds; the output is
    the mean of their logits (``create_model(..., members=k)``)."""

    def __init__(self, nets: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(nets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members]).mean(0)


def min_input_size(name: str) -> int:
    return _MIN_SIZE[check_model_name(name)]


def _load_builtin() -> None:
    from scandx.models import autoencoder, cnn, monai_nets  # noqa: F401  (registers on import)
