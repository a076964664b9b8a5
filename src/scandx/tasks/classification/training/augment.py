"""Batched, seeded augmentation of normalised 2D images and 3D volumes.

One random affine (rotation, scale, translation, optional horizontal flip)
and brightness/contrast per image, drawn from the caller's generator so an
epoch's augmentation depends only on (seed, epoch).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from scandx.tasks.classification.plan import Augmentation


def augment_batch(
    x: torch.Tensor,
    aug: Augmentation,
    mean: torch.Tensor,
    std: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """Augment a normalised batch (N, C, H, W) or (N, C, D, H, W); padding is black in
    display space. Volumes get an in-plane transform, the same for all their slices."""
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
    zero, one = torch.zeros(n), torch.ones(n)
    if x.dim() == 4:
        rows = [torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)]
    else:  # volumes (N, C, D, H, W): the same in-plane transform for every slice
        rows = [
            torch.stack([cos * flip, -sin, zero, tx], 1),
            torch.stack([sin * flip, cos, zero, ty], 1),
            torch.stack([zero, zero, one, zero], 1),
        ]
    theta = torch.stack(rows, 1).to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    view = (1, -1, *([1] * (x.dim() - 2)))
    mean, std = mean.to(x.device).view(view), std.to(x.device).view(view)
    display = x * std + mean
    display = F.grid_sample(
        display, grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    per_image = (-1, *([1] * (x.dim() - 1)))
    c = contrast.to(x.device).view(per_image)
    b = bright.to(x.device).view(per_image)
    display = (display - 0.5) * c + 0.5 + b
    return (display - mean) / std
