"""What a segmenter's U-Net learns from unlabelled patches (``scandx pretrain`` on a
segmentation source), as a ``TrainingTask`` of the shared engine.

The network is the segmentation plan's own U-Net with one output channel per input
channel: it reconstructs the (normalised) patch from a corrupted copy.

- ``mae`` (masked image modelling, as Models Genesis in-paints): blocks of
  ``mask_patch`` voxels covering ``mask_ratio`` of the patch are set to 0 (the mean of
  the z-scored image); the loss is the squared error on the hidden voxels only, so the
  network must infer the missing anatomy from its context.
- ``autoencoder`` (denoising): Gaussian noise on every voxel and a lighter block mask
  (a quarter of the patch); the loss is the squared error on every voxel. A U-Net's
  skip connections would otherwise copy its input to its output (the identity is a
  perfect reconstruction), learning nothing.

``simclr`` (contrastive, the encoder half only) is in ``segmenter_simclr.py``.

Patches are drawn as segmentation training draws them (``train.sample_batch``: flips,
rotation and scaling, brightness/contrast/gamma/noise), from (seed, epoch) only, with no
foreground oversampling (labels are ignored). Validation is the same loss on a fixed set
of validation patches (seeded, the same every epoch); the score is minus that loss.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator

import numpy as np
import torch

from scandx.core.device import autocast
from scandx.core.engine import DEADLINE_FRACTION, Schedule, TrainingTask
from scandx.models import create_model
from scandx.tasks.pretrain.plan import PretrainPlan
from scandx.tasks.segmentation.plan import SegPlan
from scandx.tasks.segmentation.train import SegData, sample_batch

SEGMENTER_METHODS = ("mae", "autoencoder", "simclr")  # simclr: segmenter_simclr.py
DENOISE_STD = 0.5  # autoencoder: noise in units of the z-scored image's std
DENOISE_MASK_RATIO = 0.25  # autoencoder: share of the patch also hidden
VAL_BATCHES = 4  # fixed validation patches: this many batches of the plan's size


def reconstruction_net(seg: SegPlan) -> torch.nn.Module:
    """The segmentation plan's U-Net with ``in_channels`` outputs (a reconstruction)."""
    return create_model(
        seg.model,
        seg.spatial_dims,
        seg.in_channels,
        seg.in_channels,
        input_size=seg.patch_size,
        **seg.model_kwargs,
    )


def output_layer_names(seg: SegPlan) -> set[str]:
    """The tensors whose shape depends on the number of outputs (the output layer, deep
    supervision heads): found by building the network with two output counts, so the
    rule holds for any registered segmenter."""
    a, b = (
        create_model(
            seg.model, seg.spatial_dims, seg.in_channels, n, input_size=seg.patch_size,
            **seg.model_kwargs,
        ).state_dict()
        for n in (2, 3)
    )  # fmt: skip
    return {k for k in a if k not in b or tuple(a[k].shape) != tuple(b[k].shape)}


def block_mask(
    shape: tuple[int, ...], block: int, ratio: float, gen: torch.Generator
) -> torch.Tensor:
    """(B, 1, *S) float mask, 1 where hidden: ``ratio`` of the blocks of ``block``
    voxels per edge (exactly that many per patch), chosen by ``gen``."""
    b, spatial = shape[0], shape[2:]
    grid = [math.ceil(s / block) for s in spatial]
    n = math.prod(grid)
    k = max(1, round(ratio * n))
    masks = []
    for _ in range(b):
        flat = torch.zeros(n)
        flat[torch.randperm(n, generator=gen)[:k]] = 1.0
        m = flat.reshape(1, 1, *grid)
        for axis in range(len(spatial)):
            m = m.repeat_interleave(block, dim=axis + 2)
        masks.append(m[(0, slice(None), *(slice(0, s) for s in spatial))])
    return torch.stack(masks)


def corrupt(
    x: torch.Tensor, method: str, plan: PretrainPlan, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(network input, target): the target packs the clean patch and the loss weights
    (channels ``:C`` and ``C``), so the engine's (input, target) batches carry both."""
    if method == "mae":
        mask = block_mask(tuple(x.shape), plan.mask_patch, plan.mask_ratio, gen)
        inp, weight = x * (1 - mask), mask
    else:
        mask = block_mask(tuple(x.shape), plan.mask_patch, DENOISE_MASK_RATIO, gen)
        noise = torch.randn(x.shape, generator=gen) * DENOISE_STD
        inp, weight = (x + noise) * (1 - mask), torch.ones_like(mask)
    return inp, torch.cat([x, weight], 1)


def reconstruction_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the voxels the target's weight channel selects."""
    clean, weight = target[:, :-1], target[:, -1:]
    err = ((output - clean) ** 2 * weight).sum()
    return err / (weight.sum() * clean.shape[1]).clamp_min(1.0)


class SegmenterPretraining(TrainingTask):
    """The engine's view of segmenter pretraining (see the module docstring)."""

    def __init__(self, plan: PretrainPlan, seg: SegPlan, train: SegData, val: SegData) -> None:
        self.plan, self.method = plan, plan.method
        self.seg = copy.copy(seg)
        self.seg.foreground_fraction = 0.0  # labels ignored: patches anywhere in the ROI
        self.seg.batch_size = plan.batch_size
        self.train, self.val = train, val
        self.seed, self.device, self.precision = plan.seed, plan.device, plan.precision
        steps = plan.steps_per_epoch or 50
        self.steps = steps
        self.schedule = Schedule(
            epochs=plan.epochs,
            steps_per_epoch=steps,
            lr=plan.lr,
            weight_decay=plan.weight_decay,
            warmup_steps=plan.warmup_epochs * steps,
            patience=plan.early_stopping_patience,
            min_epochs=plan.min_epochs,
            grad_clip=12.0,  # as segmentation training (nnU-Net's clip)
            deadline_s=DEADLINE_FRACTION * plan.time_budget_s if plan.time_budget_s else None,
        )
        self._val: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    def build_model(self) -> torch.nn.Module:
        return reconstruction_net(self.seg)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return reconstruction_loss(output, target)

    def _draw(self, data: SegData, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x, _ = sample_batch(data, self.seg, rng)
        gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
        return corrupt(x, self.method, self.plan, gen)

    def batches(self, epoch: int, device: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        rng = np.random.default_rng([self.seed, epoch])  # exact resume
        for _ in range(self.steps):
            yield self._draw(self.train, rng)

    def validation_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The fixed validation patches (drawn once, without augmentation)."""
        if self._val is None:
            seg = copy.copy(self.seg)
            seg.spatial_augment = seg.intensity_augment = seg.flips = False
            rng = np.random.default_rng([self.seed, 999_983])
            self._val = []
            for _ in range(VAL_BATCHES):
                x, _ = sample_batch(self.val, seg, rng)
                gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
                self._val.append(corrupt(x, self.method, self.plan, gen))
        return self._val

    def validate(
        self, model: torch.nn.Module, epoch: int, device: str, precision: str
    ) -> dict[str, float]:
        model.eval()
        total, n = 0.0, 0
        with torch.no_grad():
            for x, target in self.validation_batches():
                with autocast(device, precision):
                    out = model(x.to(device))
                total += float(self.loss(out.float(), target.to(device))) * len(x)
                n += len(x)
        model.train()
        val_loss = total / max(n, 1)
        return {"val_loss": val_loss, "score": -val_loss}
