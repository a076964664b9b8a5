"""The cheap paths of the training step: the fused augmentation is the plain one up to
rounding, and the engine reads losses and gradient norms in blocks without missing a
non-finite one or mixing them up."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from scandx.core.engine import Schedule, TrainingTask, fit, read_log
from scandx.core.run_dir import RunDir
from scandx.tasks.classification.plan import Augmentation
from scandx.tasks.classification.training.augment import affine_grid, augment_batch

SHAPES = [[5, 1, 28, 28], [3, 2, 7, 9], [2, 1, 4, 6, 8], [4, 3, 6, 10, 12]]


@pytest.mark.parametrize("shape", SHAPES)
def test_affine_grid_matches_torch(shape):
    d = len(shape) - 2
    theta = torch.randn(shape[0], d, d + 1, generator=torch.Generator().manual_seed(0))
    want = F.affine_grid(theta, shape, align_corners=False)
    assert torch.allclose(affine_grid(theta, shape), want, atol=1e-6)


def _plain(x, aug, mean, std, g):
    """The augmentation written out step by step (one draw per parameter)."""
    n = x.shape[0]

    def uniform(lo, hi):
        return lo + (hi - lo) * torch.rand(n, generator=g)

    angle = uniform(-aug.rotate_deg, aug.rotate_deg) * math.pi / 180
    scale = uniform(*aug.scale)
    tx, ty = uniform(-aug.translate, aug.translate) * 2, uniform(-aug.translate, aug.translate) * 2
    flip = (torch.rand(n, generator=g) < 0.5).float() * 2 - 1 if aug.hflip else torch.ones(n)
    bright = uniform(-aug.brightness, aug.brightness)
    contrast = uniform(1 - aug.contrast, 1 + aug.contrast)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    rows = [torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)]
    grid = F.affine_grid(torch.stack(rows, 1), list(x.shape), align_corners=False)
    m, s = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)
    display = F.grid_sample(x * s + m, grid, align_corners=False)
    display = (display - 0.5) * contrast.view(-1, 1, 1, 1) + 0.5 + bright.view(-1, 1, 1, 1)
    return (display - m) / s


@pytest.mark.parametrize("hflip", [False, True])
def test_fused_augmentation_is_the_plain_one(hflip):
    x = torch.randn(16, 2, 20, 20, generator=torch.Generator().manual_seed(1))
    mean, std = torch.tensor([0.4, 0.6]), torch.tensor([0.2, 0.3])
    aug = Augmentation(rotate_deg=25, translate=0.1, hflip=hflip, brightness=0.2, contrast=0.3)
    got = augment_batch(x, aug, mean, std, torch.Generator().manual_seed(7))
    want = _plain(x, aug, mean, std, torch.Generator().manual_seed(7))
    assert torch.allclose(got, want, atol=1e-4)


def test_volume_augmentation_moves_every_slice_alike():
    x = torch.randn(1, 1, 1, 12, 12).expand(2, 1, 3, 12, 12).contiguous()
    out = augment_batch(
        x, Augmentation(), torch.tensor([0.5]), torch.tensor([0.25]), torch.Generator()
    )
    assert out.shape == x.shape
    assert torch.allclose(out[:, :, 0], out[:, :, 2], atol=1e-5)


class _InfGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * math.inf


class Steps(TrainingTask):
    """40 steps an epoch (more than one block of 32); faults at chosen (epoch, step)."""

    def __init__(self, nan_at=None, inf_grad_at=None) -> None:
        self.seed, self.device, self.precision = 0, "cpu", "fp32"
        self.schedule = Schedule(epochs=3, steps_per_epoch=40, lr=0.05)
        self.nan_at, self.inf_grad_at = nan_at, inf_grad_at
        g = torch.Generator().manual_seed(0)
        self.x = torch.cat([torch.randn(80, 4, generator=g) + 1, torch.randn(80, 4, generator=g)])
        self.y = torch.cat([torch.ones(80), torch.zeros(80)]).long()
        self.where, self.seen = (0, 0), []

    def build_model(self) -> torch.nn.Module:
        return torch.nn.Linear(4, 2)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.where == self.inf_grad_at:
            self.inf_grad_at = None
            output = _InfGrad.apply(output)
        loss = F.cross_entropy(output, target)
        if self.where == self.nan_at:
            self.nan_at = None
            loss = loss * math.nan
        self.seen.append((self.where, float(loss.detach())))
        return loss

    def batches(self, epoch: int, device: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(160, generator=torch.Generator().manual_seed(epoch))
        for b in range(40):
            self.where = (epoch, b)
            yield self.x[order[b * 4 : (b + 1) * 4]], self.y[order[b * 4 : (b + 1) * 4]]

    def validate(self, model, epoch, device, precision):
        with torch.no_grad():
            p = model(self.x).softmax(1)[:, 1]
        return {"score": float(((p > 0.5).long() == self.y).float().mean())}


def _run(tmp_path, task):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    return fit(task, run), read_log(run.log_jsonl)


def test_logged_losses_are_the_steps_losses_in_order(tmp_path):
    task = Steps()
    result, lines = _run(tmp_path, task)
    for epoch, line in enumerate(lines):
        steps = [v for (e, _), v in task.seen if e == epoch]
        assert len(steps) == 40 and line["train_loss"] == float(np.mean(steps))
    assert not result.recoveries


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ({"nan_at": (1, 35)}, "non-finite training loss (nan)"),  # after the first block
        ({"nan_at": (1, 3)}, "non-finite training loss (nan)"),  # inside the first block
        ({"inf_grad_at": (1, 20)}, "non-finite gradient norm ("),  # a finite loss
    ],
)
def test_a_non_finite_step_anywhere_in_the_epoch_is_caught(tmp_path, fault, reason):
    result, lines = _run(tmp_path, Steps(**fault))
    (event,) = result.recoveries
    assert event["epoch"] == 2 and event["reason"].startswith(reason)
    assert "restored the weights of epoch 1" in event["action"]
    assert [r["epoch"] for r in lines] == [1, 2, 3]
    assert all(math.isfinite(float(p.detach().sum())) for p in result.model.parameters())
