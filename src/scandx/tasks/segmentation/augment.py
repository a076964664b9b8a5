"""Patch augmentation after nnU-Net's recipe, lighter: in-plane rotation and scaling (one
affine resampling of the batch, zero outside; labels nearest), then brightness, contrast, gamma and
noise per patch. Every draw comes from the caller's seeded generator (exact resume)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

P_ROTATE, P_SCALE = 0.2, 0.2
P_BRIGHTNESS, P_CONTRAST, P_GAMMA, P_NOISE = 0.15, 0.15, 0.3, 0.1


def _affine(rng: np.random.Generator, dims: int, shape: tuple[int, ...]) -> np.ndarray | None:
    """theta (dims x dims+1) for ``F.affine_grid`` or None for the identity. Rotation is in
    the plane of the last two axes (safe for thick slices), in physical voxel units so a
    non-square patch is not sheared; scaling is isotropic."""
    rotate, scale = rng.random() < P_ROTATE, rng.random() < P_SCALE
    if not (rotate or scale):
        return None
    a = np.eye(dims)
    if rotate:
        angle = (
            rng.uniform(-math.pi, math.pi) if dims == 2 else rng.uniform(-math.pi / 6, math.pi / 6)
        )
        c, s = math.cos(angle), math.sin(angle)
        half = np.array(shape[::-1], float) / 2  # affine_grid's coordinate order: last axis first
        r = np.eye(dims)
        r[:2, :2] = [[c, -s], [s, c]]
        a = np.diag(1 / half) @ r @ np.diag(half)
    if scale:
        a = a * rng.uniform(0.7, 1.4)  # > 1 zooms out, < 1 zooms in
    return np.concatenate([a, np.zeros((dims, 1))], 1)


def spatial(
    x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate/scale some patches of a batch: x (B, C, *S) float, y (B, 1, *S) int64."""
    dims = x.ndim - 2
    thetas = [_affine(rng, dims, tuple(x.shape[2:])) for _ in range(x.shape[0])]
    chosen = [i for i, t in enumerate(thetas) if t is not None]
    if not chosen:
        return x, y
    theta = torch.from_numpy(np.stack([thetas[i] for i in chosen])).float()
    size = [len(chosen), 1, *x.shape[2:]]
    grid = F.affine_grid(theta, size, align_corners=False)
    x, y = x.clone(), y.clone()
    x[chosen] = F.grid_sample(
        x[chosen], grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    y[chosen] = F.grid_sample(
        y[chosen].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False
    ).long()
    return x, y


def intensity(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Brightness, contrast, gamma and Gaussian noise, each with its own probability,
    per patch (the same for its channels)."""
    x = x.clone()
    for i in range(x.shape[0]):
        v = x[i]
        if rng.random() < P_BRIGHTNESS:
            v = v * float(rng.uniform(0.75, 1.25))
        if rng.random() < P_CONTRAST:
            lo, hi, mean = v.min(), v.max(), v.mean()
            v = ((v - mean) * float(rng.uniform(0.75, 1.25)) + mean).clamp(lo, hi)
        if rng.random() < P_GAMMA:
            lo, hi = v.min(), v.max()
            span = float(hi - lo) + 1e-8
            v = ((v - lo) / span).clamp(0, 1) ** float(rng.uniform(0.7, 1.5)) * span + lo
        if rng.random() < P_NOISE:
            g = torch.Generator().manual_seed(int(rng.integers(2**31)))
            v = v + torch.randn(v.shape, generator=g) * float(math.sqrt(rng.uniform(0, 0.1)))
        x[i] = v
    return x
