"""The training schedule: epochs, steps, learning rate (linear warm-up, then cosine
decay to 1% of the rate), early stopping, the time budget's deadline and gradient
clipping; and the seed of each epoch, from which its shuffle and augmentation come."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Schedule:
    epochs: int
    steps_per_epoch: int
    lr: float
    weight_decay: float = 1e-4
    warmup_steps: int = 0
    patience: int | None = None  # validated epochs without improvement; None: never stop
    min_epochs: int = 1
    channels_last: bool = False
    grad_clip: float | None = 1.0  # max gradient norm (what BN-free networks need)
    deadline_s: float | None = None  # training seconds the budget allows (all epochs)


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 1% of the base rate."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch
