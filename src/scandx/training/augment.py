"""Batched, seeded augmentation of normalised 2D image tensors.

One random affine (rotation, scale, translation, optional horizontal flip)
and brightness/contrast per image, drawn from the caller's generator so an
epoch's augmentation depends only on (seed, epoch).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from scandx.config import Augmentation


def augment_batch(
    x: torch.Tensor,
    aug: Augmentation,
    mean: torch.Tensor,
    std: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """Augment a normalised batch (N, C, H, W); padding is black in display space."""
    n = x.shape[0]

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    angle = uniform(-aug.rotate_deg, aug.rotate_deg) * math.pi / 180
    scale = uniform(*aug.scale)
    tx, ty = uniform(-aug.translate, aug.translate) * 2, uniform(-aug.translate, aug.translate) * 2
    flip = (
        (torch.rand(n, generator=generator) < 0.5).float() * 2 - 1 if aug.hflip else torch.ones(n)
    )
    bright = uniform(-aug.brightness, aug.brightness)
    contrast = uniform(1 - aug.contrast, 1 + aug.contrast)

    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1
    ).to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    mean, std = mean.to(x.device).view(1, -1, 1, 1), std.to(x.device).view(1, -1, 1, 1)
    display = x * std + mean
    display = F.grid_sample(
        display, grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    c = contrast.to(x.device).view(-1, 1, 1, 1)
    b = bright.to(x.device).view(-1, 1, 1, 1)
    display = (display - 0.5) * c + 0.5 + b
    return (display - mean) / std
