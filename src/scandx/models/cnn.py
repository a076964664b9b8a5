"""The small networks of the articles scandx grew from, kept as baselines."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from scandx.models.registry import register_model


def _conv(spatial_dims: int) -> type[nn.Module]:
    return nn.Conv2d if spatial_dims == 2 else nn.Conv3d


def _pool(spatial_dims: int) -> type[nn.Module]:
    return nn.MaxPool2d if spatial_dims == 2 else nn.MaxPool3d


class PlainCNN(nn.Module):
    """Conv 3x3 ('valid') -> [BatchNorm] -> ReLU -> MaxPool 2 blocks, then a dense head.

    The articles' networks have no normalisation; without it a CPU run at the
    planner's learning rate collapsed to constant predictions (validation AUC 0.5000
    from epoch 8 on, loss ln 2), so ``norm=True`` (batch norm after each conv) is the
    default and ``norm=False`` gives the articles' exact network.

    The flatten size follows ``input_size``; ``forward_features`` and
    ``forward_head`` split the network where a classifier head starts.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        input_size: list[int],
        widths: tuple[int, ...],
        hidden: int,
        dropout: float = 0.0,
        norm: bool = True,
    ):
        super().__init__()
        conv, pool = _conv(spatial_dims), _pool(spatial_dims)
        bn = nn.BatchNorm2d if spatial_dims == 2 else nn.BatchNorm3d
        layers: list[nn.Module] = []
        size = list(input_size)
        c = in_channels
        for w in widths:
            layers += [conv(c, w, kernel_size=3, bias=not norm)]
            layers += [bn(w)] if norm else []
            layers += [nn.ReLU(inplace=True), pool(2)]
            size = [(s - 2) // 2 for s in size]
            c = w
        if min(size) < 1:
            raise ValueError(f"input {input_size} is too small for {len(widths)} conv blocks")
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c * math.prod(size), hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, out_channels),
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model("simple-cnn", min_size=10)  # two valid 3x3 convs + pools
def simple_cnn(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    input_size: list[int],
    hidden: int = 64,
    dropout: float = 0.0,
    norm: bool = True,
) -> nn.Module:
    """Conv(32) -> pool -> Conv(64) -> pool -> Dense(64) -> Dense(classes); 28x28 in articles."""
    return PlainCNN(
        spatial_dims, in_channels, out_channels, input_size, (32, 64), hidden, dropout, norm
    )


@register_model("keras-cnn", min_size=46)
def keras_cnn(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    input_size: list[int],
    hidden: int = 1024,
    dropout: float = 0.5,
    norm: bool = True,
) -> nn.Module:
    """Four conv blocks (32, 64, 128, 128) and Dense(1024); 224x224 in the articles."""
    widths = (32, 64, 128, 128)
    return PlainCNN(
        spatial_dims, in_channels, out_channels, input_size, widths, hidden, dropout, norm
    )
