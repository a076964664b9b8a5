"""A convolutional autoencoder whose encoder is a registered classifier (kind
"autoencoder", ``conv-autoencoder``), and what every classifier backbone gives the
pretraining methods: its last feature map, its pooled features, its weights without the
output layer.

The encoder is the classifier itself (``backbone``, default ``simple-cnn``), held as
``encoder`` so that its weights, under the classifier's own parameter names, start a
classifier (``scandx train --init``). Its last feature map is average-pooled to at most
4 cells per axis and flattened into the code (``code_dim``, a linear layer); the decoder
mirrors it back: a linear layer to a 4-cell map, then x2 upsampling + 3x3 convolution
stages, halving the channels, until the map reaches the input size (interpolated to it
exactly, since valid convolutions leave sizes such as 28 -> 5). 2D and 3D.

``reconstruction_error`` is the anomaly score: the mean squared error per image in the
normalised input space.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from scandx.models.registry import create_model, register_model

MAX_CODE_CELLS = 4  # per axis: the pooled feature map the code is made from


def last_feature_map(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The classifier's last feature map (N, C, *s): its ``forward_features``."""
    forward_features = getattr(model, "forward_features", None)
    if forward_features is None:
        raise TypeError(f"{type(model).__name__} has no forward_features")
    return forward_features(x)


def pooled_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The last feature map averaged over space, (N, C)."""
    return last_feature_map(model, x).flatten(2).mean(2)


def output_layer(model: nn.Module) -> str:
    """The name of the classifier's output layer: its last linear layer."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise TypeError(f"{type(model).__name__} has no linear output layer")
    return names[-1]


def encoder_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The classifier's weights and buffers under its own names, output layer left out."""
    head = output_layer(model) + "."
    return {k: v for k, v in model.state_dict().items() if not k.startswith(head)}


@torch.no_grad()
def feature_map_shape(
    model: nn.Module, in_channels: int, input_size: list[int]
) -> tuple[int, list[int]]:
    """(channels, spatial shape) of the classifier's last feature map for this input."""
    was_training = model.training
    model.eval()
    out = last_feature_map(model, torch.zeros(1, in_channels, *input_size))
    model.train(was_training)
    return int(out.shape[1]), [int(s) for s in out.shape[2:]]


class ConvAutoencoder(nn.Module):
    """``encode(x)`` -> (N, code_dim); ``forward(x)`` -> the reconstruction of x."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        input_size: list[int],
        backbone: str = "simple-cnn",
        code_dim: int = 128,
        backbone_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.input_size = list(input_size)
        self.encoder = create_model(
            backbone, spatial_dims, in_channels, 2, input_size, **(backbone_kwargs or {})
        )
        channels, fmap = feature_map_shape(self.encoder, in_channels, self.input_size)
        self.cells = [min(s, MAX_CODE_CELLS) for s in fmap]
        pool = nn.AdaptiveAvgPool2d if spatial_dims == 2 else nn.AdaptiveAvgPool3d
        self.pool = pool(self.cells)
        self.to_code = nn.Linear(channels * math.prod(self.cells), code_dim)
        width = min(channels, 128)
        self.seed_channels = width
        self.from_code = nn.Linear(code_dim, width * math.prod(self.cells))
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        norm = nn.BatchNorm2d if spatial_dims == 2 else nn.BatchNorm3d
        stages = max(0, math.ceil(math.log2(max(input_size) / max(self.cells))))
        layers: list[nn.Module] = []
        c = width
        for _ in range(stages):
            out = max(16, c // 2)
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                conv(c, out, 3, padding=1, bias=False),
                norm(out),
                nn.ReLU(inplace=True),
            ]
            c = out
        layers.append(conv(c, in_channels, 3, padding=1))
        self.decoder = nn.Sequential(*layers)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_code(self.pool(last_feature_map(self.encoder, x)).flatten(1))

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        seed = self.from_code(F.relu(code)).view(len(code), self.seed_channels, *self.cells)
        out = self.decoder(seed)
        if list(out.shape[2:]) != self.input_size:
            mode = "bilinear" if out.dim() == 4 else "trilinear"
            out = F.interpolate(out, size=self.input_size, mode=mode, align_corners=False)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def backbone_state(self) -> dict[str, torch.Tensor]:
        """The encoder's weights under the classifier's own names, output layer left out."""
        return encoder_state(self.encoder)


@register_model("conv-autoencoder", min_size=8, kind="autoencoder")
def conv_autoencoder(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    input_size: list[int],
    backbone: str = "simple-cnn",
    code_dim: int = 128,
    backbone_kwargs: dict[str, Any] | None = None,
) -> nn.Module:
    """Autoencoder over a registered classifier's features; ``out_channels`` is unused
    (the reconstruction has the input's channels)."""
    return ConvAutoencoder(
        spatial_dims, in_channels, input_size, backbone, code_dim, backbone_kwargs
    )


@torch.no_grad()
def reconstruction_error(model: nn.Module, x: torch.Tensor, batch: int = 64) -> np.ndarray:
    """Mean squared reconstruction error per image, (N,) float64, in eval mode on the
    model's device."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(x), batch):
        xb = x[i : i + batch].to(device)
        out.append(((model(xb).float() - xb) ** 2).flatten(1).mean(1).double().cpu())
    return torch.cat(out).numpy() if out else np.zeros(0)
