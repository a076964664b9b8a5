"""Views of grey-scale medical images for self-supervised pretraining.

Per image, from the caller's generator (so an epoch's views depend on (seed, epoch)
only): a random resized crop (area 40-100% for SimCLR, 70-100% otherwise, aspect 3/4 to
4/3) with a small rotation (+-10 degrees) in one affine resampling; gamma (0.7-1.4),
brightness (+-0.1) and contrast (0.75-1.25) in display space; a Gaussian blur (sigma
0.1-1.5 px) for half of the images; Gaussian noise (sd up to 0.05 of the display
range). No colour jitter (the images are grey, or their colour is the stain's) and no
flips: laterality matters (a heart on the right is a finding). Volumes get the same
in-plane transform on every slice and an in-plane blur.

Inputs and outputs are normalised model inputs (``(display - mean) / std``); the
intensity changes are made in display space, clamped to [0, 1] where gamma needs it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from scandx.tasks.classification.training.augment import affine_grid


@dataclass(frozen=True)
class ViewPolicy:
    crop_area: tuple[float, float] = (0.4, 1.0)
    aspect: tuple[float, float] = (3 / 4, 4 / 3)
    rotate_deg: float = 10.0
    gamma: tuple[float, float] = (0.7, 1.4)
    brightness: float = 0.1
    contrast: float = 0.25
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 1.5)
    noise_sd: float = 0.05


STRONG = ViewPolicy()  # SimCLR: two views must differ enough to make the task hard
MILD = ViewPolicy(crop_area=(0.7, 1.0), rotate_deg=5.0, gamma=(0.85, 1.2), noise_sd=0.02)


def _uniform(lo: float, hi: float, n: int, g: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """In-plane Gaussian blur with a sigma per image (separable, 5-tap up to 9)."""
    radius = max(1, min(4, math.ceil(2 * float(sigma.max()))))
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(taps[None] ** 2) / (2 * sigma[:, None].to(x) ** 2))
    k = k / k.sum(1, keepdim=True)  # (N, K)
    n, c = x.shape[:2]
    flat = x.reshape(1, n * c, *x.shape[2:])
    kern = k.repeat_interleave(c, 0)  # (N*C, K)
    spatial = x.dim() - 2
    for axis in (-1, -2):
        shape = [n * c, 1] + [1] * spatial
        shape[axis] = 2 * radius + 1
        pad = [0] * (2 * spatial)
        pad[2 * (-axis - 1)] = pad[2 * (-axis - 1) + 1] = radius
        flat = F.pad(flat, pad, mode="replicate")
        conv = F.conv2d if spatial == 2 else F.conv3d
        flat = conv(flat, kern.view(shape), groups=n * c)
    return flat.view_as(x)


def make_views(
    x: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    generator: torch.Generator,
    policy: ViewPolicy = STRONG,
) -> torch.Tensor:
    """One augmented view of each normalised image (N, C, *size), on x's device."""
    n, c = x.shape[:2]
    spatial = [1] * (x.dim() - 2)
    g = generator
    area = _uniform(*policy.crop_area, n, g)
    log_aspect = _uniform(math.log(policy.aspect[0]), math.log(policy.aspect[1]), n, g)
    aspect = log_aspect.exp()
    sx, sy = (area * aspect).sqrt().clamp(max=1), (area / aspect).sqrt().clamp(max=1)
    tx, ty = (
        (1 - sx) * (2 * torch.rand(n, generator=g) - 1),
        (1 - sy) * (2 * torch.rand(n, generator=g) - 1),
    )
    angle = _uniform(-1, 1, n, g) * policy.rotate_deg * math.pi / 180
    gamma = _uniform(*policy.gamma, n, g)
    bright = _uniform(-policy.brightness, policy.brightness, n, g)
    contrast = _uniform(1 - policy.contrast, 1 + policy.contrast, n, g)
    blur_on = torch.rand(n, generator=g) < policy.blur_p
    sigma = torch.where(blur_on, _uniform(*policy.blur_sigma, n, g), torch.zeros(n))
    noise = torch.randn(x.shape, generator=g) * _uniform(0, policy.noise_sd, n, g).view(
        n, 1, *spatial
    )

    cos, sin = angle.cos(), angle.sin()
    if x.dim() == 4:
        rows = [cos * sx, -sin * sy, tx, sin * sx, cos * sy, ty]
        theta = torch.stack(rows, 1).view(n, 2, 3)
    else:  # the same in-plane crop and rotation for every slice
        zero, one = torch.zeros(n), torch.ones(n)
        rows = [cos * sx, -sin * sy, zero, tx, sin * sx, cos * sy, zero, ty]
        theta = torch.stack([*rows, zero, zero, one, zero], 1).view(n, 3, 4)
    dev, dt = x.device, x.dtype
    m = mean.to(dev, dt).view(1, c, *spatial)
    s = std.to(dev, dt).view(1, c, *spatial)
    display = x * s + m
    grid = affine_grid(theta.to(dev, dt), list(x.shape))
    display = F.grid_sample(
        display, grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    display = display.clamp(0, 1) ** gamma.to(dev, dt).view(n, 1, *spatial)
    contrast_t, bright_t = contrast.to(dev, dt).view(n, 1, *spatial), bright.to(dev, dt)
    display = (display - 0.5) * contrast_t + 0.5 + bright_t.view(n, 1, *spatial)
    if bool(blur_on.any()):
        blurred = _blur(display, sigma.clamp(min=1e-3))
        display = torch.where(blur_on.to(dev).view(n, 1, *spatial), blurred, display)
    display = display + noise.to(dev, dt)
    return (display - m) / s
