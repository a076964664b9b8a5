"""Pretraining's part of the training engine (``core/engine.py``): the method's network,
its loss, the epoch's batches of views (drawn from (seed, epoch) only, so ``--resume``
replays exactly) and validation (the same loss on the validation images with views and
masks drawn from a fixed seed, so epochs compare; the score is minus that loss)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch

from scandx.core.device import autocast
from scandx.core.engine import DEADLINE_FRACTION, Schedule, TrainingTask, epoch_seed
from scandx.tasks.pretrain.augment import MILD, STRONG, make_views
from scandx.tasks.pretrain.methods import (
    AE_INPUT_NOISE,
    build_network,
    masked_mse,
    nt_xent,
    patch_mask,
)
from scandx.tasks.pretrain.plan import PretrainPlan

VAL_SEED_OFFSET = 7919  # validation views: seed + this, the same every epoch


def batch_plan(n: int, batch_size: int) -> tuple[int, int]:
    """(batch, steps): whole batches only (NT-Xent and batch norm want no batch of one),
    the images left over differ every epoch."""
    batch = max(2, min(batch_size, n))
    return batch, max(1, n // batch)


class PretrainTraining(TrainingTask):
    def __init__(self, plan: PretrainPlan, x_train: torch.Tensor, x_val: torch.Tensor) -> None:
        self.plan, self.x_train, self.x_val = plan, x_train, x_val
        self.seed, self.device, self.precision = plan.seed, plan.device, plan.precision
        self.batch, steps = batch_plan(len(x_train), plan.batch_size)
        self.schedule = Schedule(
            epochs=plan.epochs,
            steps_per_epoch=plan.steps_per_epoch or steps,
            lr=plan.lr,
            weight_decay=plan.weight_decay,
            warmup_steps=(plan.steps_per_epoch or steps) * plan.warmup_epochs,
            patience=plan.early_stopping_patience,
            min_epochs=plan.min_epochs,
            channels_last=plan.network["spatial_dims"] == 2,
            deadline_s=DEADLINE_FRACTION * plan.time_budget_s if plan.time_budget_s else None,
        )
        self.mean = torch.tensor(plan.network["intensity_mean"], dtype=torch.float32)
        self.std = torch.tensor(plan.network["intensity_std"], dtype=torch.float32)

    def build_model(self) -> torch.nn.Module:
        return build_network(self.plan.method, self.plan.network, self.plan)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.plan.method == "simclr":
            return nt_xent(output, self.plan.temperature)
        if self.plan.method == "mae":
            return masked_mse(output, target.float())
        return torch.mean((output - target.float()) ** 2)

    def inputs(self, x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The method's (network input, loss target) for a batch of normalised images."""
        method = self.plan.method
        if method == "simclr":
            views = [make_views(x, self.mean, self.std, g, STRONG) for _ in range(2)]
            return torch.cat(views), torch.zeros(2 * len(x))
        view = make_views(x, self.mean, self.std, g, MILD)
        if method == "mae":
            size = list(x.shape[2:])
            mask = patch_mask(len(x), size, self.plan.mask_patch, self.plan.mask_ratio, g)
            mask = mask.to(x.device, x.dtype)
            return view * (1 - mask), torch.cat([view, mask], 1)
        noise = torch.randn(view.shape, generator=g).to(view) * AE_INPUT_NOISE
        return view + noise, view

    def batches(self, epoch: int, device: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(epoch_seed(self.plan.seed, epoch))
        order = torch.randperm(len(self.x_train), generator=g)
        for b in range(self.schedule.steps_per_epoch):
            idx = order[(b * self.batch) % len(order) :][: self.batch]
            yield self.inputs(self.x_train[idx].to(device), g)

    @torch.no_grad()
    def validate(
        self, model: torch.nn.Module, epoch: int, device: str, precision: str
    ) -> dict[str, Any]:
        val_loss = validation_loss(self, model, device, precision)
        return {"val_loss": val_loss, "score": -val_loss}


@torch.no_grad()
def validation_loss(
    task: PretrainTraining, model: torch.nn.Module, device: str, precision: str = "fp32"
) -> float:
    """The method's loss on the validation images, views from a fixed seed."""
    model.eval()
    g = torch.Generator().manual_seed(task.plan.seed + VAL_SEED_OFFSET)
    batch, _ = batch_plan(len(task.x_val), task.plan.batch_size)
    total, count = 0.0, 0
    for start in range(0, len(task.x_val), batch):
        x = task.x_val[start : start + batch]
        if task.plan.method == "simclr" and len(x) < 2:
            continue
        inp, target = task.inputs(x.to(device), g)
        with autocast(device, precision):
            out = model(inp)
        total += float(task.loss(out.float(), target.to(device))) * len(x)
        count += len(x)
    return total / max(count, 1) if count else math.nan
