"""SimCLR for a segmenter: the U-Net's encoder half (input block, down-sampling blocks,
bottleneck) learns to give two augmented views of one patch the same pooled bottleneck
features, against the other patches of the batch (NT-Xent through a projection head).

Only the encoder half is pretrained (the decoder has no part in a pooled embedding), so
``train --init`` loads those tensors and starts the decoder fresh. The views are
stronger than segmentation's augmentation (which leaves most patches untouched):
every view gets a random flip per axis, a quarter turn in-plane (square patches), a
brightness/contrast change and Gaussian noise. Batches are the segmentation plan's
(2 patches in 3D: few negatives; mae suits small batches better, say the notes).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from scandx.errors import ScandxError
from scandx.models import create_model
from scandx.tasks.pretrain.plan import PretrainPlan
from scandx.tasks.pretrain.segmenter_objectives import VAL_BATCHES, SegmenterPretraining
from scandx.tasks.segmentation.plan import SegPlan
from scandx.tasks.segmentation.train import SegData, sample_batch

ENCODER_PARTS = ("input_block", "downsamples", "bottleneck")  # DynUNet's encoder half


class UNetEncoderProjection(torch.nn.Module):
    """The U-Net's encoder half under the U-Net's own attribute names, global average
    pooling and a projection head (``projection``, not written to the encoder)."""

    def __init__(self, seg: SegPlan, projection_dim: int) -> None:
        super().__init__()
        unet = create_model(
            seg.model, seg.spatial_dims, seg.in_channels, 2, input_size=seg.patch_size,
            **seg.model_kwargs,
        )  # fmt: skip
        if not all(hasattr(unet, p) for p in ENCODER_PARTS):
            raise ScandxError(f"--method simclr needs a DynUNet-like segmenter, not {seg.model}")
        self.input_block = unet.input_block
        self.downsamples = unet.downsamples
        self.bottleneck = unet.bottleneck
        width = int(self.bottleneck.conv2.conv.out_channels)
        self.projection = torch.nn.Sequential(
            torch.nn.Linear(width, width), torch.nn.ReLU(), torch.nn.Linear(width, projection_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.input_block(x)
        for block in self.downsamples:
            h = block(h)
        h = self.bottleneck(h)
        return self.projection(h.flatten(2).mean(2))


def nt_xent(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss for ``z`` = [views 1; views 2] (2B, D): each view's positive is the
    other view of its patch, every other row a negative."""
    z = F.normalize(z.float(), dim=1)
    n = z.shape[0] // 2
    sim = z @ z.t() / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    pos = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, pos)


def view(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One strongly augmented view of a batch of patches (B, C, *S)."""
    out = []
    dims = x.ndim - 2
    for v in x:
        u = lambda: float(torch.rand((), generator=gen))  # noqa: E731
        for axis in range(dims):
            if u() < 0.5:
                v = v.flip(axis + 1)
        if v.shape[-1] == v.shape[-2]:
            v = torch.rot90(v, int(u() * 4) % 4, dims=(-2, -1))
        v = v * (0.7 + 0.6 * u()) + (u() - 0.5) * 0.6
        v = v + torch.randn(v.shape, generator=gen) * 0.2 * u()
        out.append(v)
    return torch.stack(out)


def encoder_state(net: UNetEncoderProjection, seg: SegPlan) -> dict[str, torch.Tensor]:
    """The pretrained encoder half under every name the segmenter gives it (DynUNet also
    lists its blocks under ``skip_layers``), without the projection head."""
    unet = create_model(
        seg.model, seg.spatial_dims, seg.in_channels, 2, input_size=seg.patch_size,
        **seg.model_kwargs,
    )  # fmt: skip
    for part in ENCODER_PARTS:
        getattr(unet, part).load_state_dict(getattr(net, part).state_dict())
    ptrs = {t.data_ptr() for p in ENCODER_PARTS for t in getattr(unet, p).state_dict().values()}
    return {k: v for k, v in unet.state_dict().items() if v.data_ptr() in ptrs}


class SegmenterSimCLR(SegmenterPretraining):
    """The engine's view: inputs are [views 1; views 2] of the same crops; the target
    is unused (zeros)."""

    def __init__(self, plan: PretrainPlan, seg: SegPlan, train: SegData, val: SegData) -> None:
        super().__init__(plan, seg, train, val)
        self.seg.spatial_augment = self.seg.intensity_augment = self.seg.flips = False

    def build_model(self) -> torch.nn.Module:
        return UNetEncoderProjection(self.seg, self.plan.projection_dim)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nt_xent(output, self.plan.temperature)

    def _draw(self, data: SegData, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x, _ = sample_batch(data, self.seg, rng)
        gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
        views = torch.cat([view(x, gen), view(x, gen)])
        return views, torch.zeros(len(views))

    def validation_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if self._val is None:  # fixed: drawn once from their own seed
            rng = np.random.default_rng([self.seed, 999_983])
            self._val = [self._draw(self.val, rng) for _ in range(VAL_BATCHES)]
        return self._val
