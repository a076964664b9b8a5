"""The three pretraining objectives, each a network around the downstream classifier
(``backbone``, held under that name so its weights keep the classifier's own parameter
names after the prefix) and a loss.

- simclr (Chen et al., 2020): two views of each image, the backbone's pooled features
  through a projection head (Linear-ReLU-Linear), NT-Xent at ``temperature``: each
  view's positive is the other view of its image, its negatives the other 2N - 2 views;
- mae (He et al., 2022, for convolutional backbones as in SparK/ConvNeXt-V2 without
  sparse convolutions): ``mask_ratio`` of the ``mask_patch``-pixel patches set to 0 (the
  normalised mean), a light decoder (1x1 conv, upsampling to the input size, 3x3 conv)
  from the backbone's last feature map, the loss the mean squared error on the hidden
  pixels only;
- autoencoder: the registry's ``conv-autoencoder`` over the backbone, input with light
  noise (denoising), the loss the mean squared error against the clean view.

The batches the engine feeds: simclr (2N views, unused target), mae (masked input,
target = [image, mask] stacked on the channel axis), autoencoder (noisy view, clean
view).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from scandx.models import create_model
from scandx.models.autoencoder import (
    ConvAutoencoder,
    encoder_state,
    feature_map_shape,
    last_feature_map,
)

AE_INPUT_NOISE = 0.1  # sd of the denoising autoencoder's input noise (normalised units)


def build_backbone(network: dict[str, Any]) -> nn.Module:
    """The downstream classifier (2 outputs: its output layer is never kept)."""
    return create_model(
        network["model"],
        network["spatial_dims"],
        network["in_channels"],
        2,
        input_size=network["input_size"],
        **network.get("model_kwargs", {}),
    )


class SimCLRNet(nn.Module):
    def __init__(self, network: dict[str, Any], projection_dim: int) -> None:
        super().__init__()
        self.backbone = build_backbone(network)
        width, _ = feature_map_shape(self.backbone, network["in_channels"], network["input_size"])
        hidden = max(projection_dim, min(width, 512))
        self.projection = nn.Sequential(
            nn.Linear(width, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, projection_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(last_feature_map(self.backbone, x).flatten(2).mean(2))


class MaskedAutoencoderNet(nn.Module):
    def __init__(self, network: dict[str, Any]) -> None:
        super().__init__()
        self.backbone = build_backbone(network)
        self.input_size = list(network["input_size"])
        dims, channels = network["spatial_dims"], network["in_channels"]
        width, _ = feature_map_shape(self.backbone, channels, self.input_size)
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        self.reduce = conv(width, 64, 1)
        self.out = conv(64, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = F.relu(self.reduce(last_feature_map(self.backbone, x)))
        mode = "bilinear" if f.dim() == 4 else "trilinear"
        return self.out(F.interpolate(f, size=self.input_size, mode=mode, align_corners=False))


def build_network(method: str, network: dict[str, Any], plan: Any) -> nn.Module:
    if method == "simclr":
        return SimCLRNet(network, plan.projection_dim)
    if method == "mae":
        return MaskedAutoencoderNet(network)
    return build_autoencoder(network, plan.code_dim)


def build_autoencoder(network: dict[str, Any], code_dim: int) -> nn.Module:
    """The registry's autoencoder over the downstream classifier (training and the
    anomaly Predictor build it here)."""
    return create_model(
        "conv-autoencoder",
        network["spatial_dims"],
        network["in_channels"],
        network["in_channels"],
        input_size=network["input_size"],
        backbone=network["model"],
        code_dim=code_dim,
        backbone_kwargs=network.get("model_kwargs", {}),
    )


def backbone_of(net: nn.Module) -> nn.Module:
    return net.encoder if isinstance(net, ConvAutoencoder) else net.backbone  # type: ignore[return-value]


def pretrained_encoder_state(net: nn.Module) -> dict[str, torch.Tensor]:
    """The classifier's tensors under its own names, without its output layer."""
    return encoder_state(backbone_of(net))


def nt_xent(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent of 2N projections (views i and i + N are the two views of image i)."""
    n = len(z) // 2
    z = F.normalize(z.float(), dim=1)
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


def patch_mask(
    n: int, size: list[int], patch: int, ratio: float, generator: torch.Generator
) -> torch.Tensor:
    """(N, 1, *size) float mask, 1 on hidden patches: ``ratio`` of the patch grid's
    cells (rounded, at least one) per image, drawn from ``generator``."""
    grid = [max(1, -(-s // patch)) for s in size]
    cells = 1
    for g in grid:
        cells *= g
    hidden = max(1, round(ratio * cells))
    order = torch.rand(n, cells, generator=generator).argsort(1)
    mask = torch.zeros(n, cells)
    mask.scatter_(1, order[:, :hidden], 1.0)
    mask = mask.view(n, 1, *grid)
    for axis, s in enumerate(size):
        mask = mask.repeat_interleave(patch, dim=2 + axis).narrow(2 + axis, 0, s)
    return mask


def masked_mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MAE loss: target is [image, mask] on the channel axis; error on hidden pixels."""
    c = output.shape[1]
    image, mask = target[:, :c], target[:, c:]
    err = ((output - image) ** 2 * mask).sum()
    return err / (mask.sum() * c).clamp(min=1)
