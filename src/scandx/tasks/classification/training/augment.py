"""Batched, seeded augmentation of normalised 2D images and 3D volumes.

One random affine (rotation, scale, translation, optional horizontal flip)
and brightness/contrast per image, drawn from the caller's generator so an
epoch's augmentation depends only on (seed, epoch).

Few kernels per batch, since on a CPU each costs a fixed few microseconds and the
steps of a small network last milliseconds: all random numbers in one draw, the
sampling grid as one matrix product with a cached base grid (``F.affine_grid``
does a batched product of tiny matrices, ten times slower on a CPU), one
``grid_sample``, and the un-normalising, brightness, contrast and re-normalising in
two fused multiply-adds (one before the sampling, since padding is black in display
space, and one after).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from scandx.tasks.classification.plan import Augmentation


@functools.lru_cache(maxsize=16)
def _base_grid(shape: tuple[int, ...], device: str, dtype: torch.dtype) -> torch.Tensor:
    """(points, dims + 1): each output voxel's normalised (x, y[, z], 1), x fastest,
    at pixel centres (``align_corners=False``), as ``F.affine_grid`` places them."""
    axes = [(torch.arange(s, dtype=torch.float64) * 2 + 1) / s - 1 for s in shape]
    mesh = torch.meshgrid(*axes, indexing="ij")  # (D,) H, W
    coords = [m.reshape(-1) for m in reversed(mesh)]  # x (width) first
    coords.append(torch.ones_like(coords[0]))
    return torch.stack(coords, 1).to(device=device, dtype=dtype)


def affine_grid(theta: torch.Tensor, shape: list[int]) -> torch.Tensor:
    """``F.affine_grid(theta, shape, align_corners=False)`` as one matrix product:
    theta (N, d, d + 1) -> grid (N, *spatial, d)."""
    n, d = theta.shape[0], theta.shape[1]
    base = _base_grid(tuple(shape[2:]), str(theta.device), theta.dtype)
    grid = base @ theta.transpose(1, 2).permute(1, 0, 2).reshape(d + 1, n * d)
    return grid.view(-1, n, d).transpose(0, 1).view(n, *shape[2:], d)


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
    rad = aug.rotate_deg * math.pi / 180
    # one draw, rows in the order the parameters were always drawn in
    ranges = [(-rad, rad), aug.scale, (-aug.translate * 2, aug.translate * 2)]
    ranges += [(-aug.translate * 2, aug.translate * 2)]
    ranges += [(0.0, 1.0)] if aug.hflip else []
    ranges += [(-aug.brightness, aug.brightness), (1 - aug.contrast, 1 + aug.contrast)]
    lo, hi = torch.tensor(ranges, dtype=torch.float32).T
    r = torch.rand(len(ranges), n, generator=generator)
    p = torch.addcmul(lo[:, None], (hi - lo)[:, None], r)
    angle, scale, tx, ty = p[0], p[1], p[2], p[3]
    flip = torch.where(r[4] < 0.5, 1.0, -1.0) if aug.hflip else None
    bright, contrast = p[-2], p[-1]

    cs = torch.stack([angle.cos(), angle.sin()]) / scale
    cos, sin = cs[0], cs[1]
    cf, sf = (cos * flip, sin * flip) if flip is not None else (cos, sin)
    if x.dim() == 4:
        theta = torch.stack([cf, -sin, tx, sf, cos, ty], 1).view(n, 2, 3)
    else:  # volumes (N, C, D, H, W): the same in-plane transform for every slice
        zero, one = torch.zeros(n), torch.ones(n)
        rows = [cf, -sin, zero, tx, sf, cos, zero, ty, zero, zero, one, zero]
        theta = torch.stack(rows, 1).view(n, 3, 4)
    grid = affine_grid(theta.to(x.device, x.dtype), list(x.shape))

    c = x.shape[1]
    spatial = [1] * (x.dim() - 2)
    mean, std = mean.to(x.device, x.dtype), std.to(x.device, x.dtype)
    display = torch.addcmul(mean.view(1, c, *spatial), x, std.view(1, c, *spatial))
    display = F.grid_sample(
        display, grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    # ((d - 0.5) * contrast + 0.5 + bright - mean) / std as d * scale + shift
    contrast, bright = contrast.to(x.device, x.dtype), bright.to(x.device, x.dtype)
    gain = contrast[:, None] / std[None, :]
    shift = ((0.5 - 0.5 * contrast + bright)[:, None] - mean[None, :]) / std[None, :]
    return torch.addcmul(shift.view(n, c, *spatial), display, gain.view(n, c, *spatial))
