"""How a segmentation plan spends its time budget, from the probe's seconds per step:
steps per epoch, epochs, how often to validate and how many validation cases a
validation pass can afford.

The budget covers the whole ``train`` command. Training and the validations during it
are planned into 80% of it; the engine's deadline (95% of the budget, less what the
command spent before training and what it will need after) is what enforces it. A
sliding-window pass over the validation cases is paid once per validation and again,
with flip test-time augmentation in 2D (one pass per flip), when the threshold and
component rule are chosen after training. On a data set of many large volumes such a
pass costs more than the training (142 cases of 96^3 on 2 cores: minutes per pass), so
one validation pass plus the post-training passes are held to ``VALIDATION_SHARE`` of
the budget: the plan keeps the first N validation cases (in case order) that fit, says
so in its notes and records N as ``val_cases``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import torch

from scandx.core.device import autocast, guard_cpu_bf16

log = logging.getLogger(__name__)

VALIDATION_SHARE = 0.15  # of the budget: one validation pass + the post-training passes
TRAINING_SHARE = 0.8  # of the budget: epochs and their validations
FORWARD_SHARE = 1 / 3  # a forward pass, as a share of a training step (forward + backward)


@dataclass
class BudgetSplit:
    epochs: int
    steps_per_epoch: int
    val_every: int
    val_cases: int | None  # None: every validation case
    note: str


def post_training_passes(tta_flips: bool, flip_axes: int) -> int:
    """Sliding-window passes per validation case when the threshold and components are
    chosen (``workflow.choose_postprocessing``): one, plus one per flipped axis."""
    return 1 + (flip_axes if tta_flips else 0)


def sliding_windows(shape: list[int], window: list[int]) -> int:
    """Windows of a half-overlapping sliding-window pass over ``shape`` (MONAI's rule:
    per axis, one window when it fits, else ceil((size - window) / (window / 2)) + 1)."""
    return math.prod(
        1 if s <= w else math.ceil((s - w) / max(1, w // 2)) + 1
        for s, w in zip(shape, window, strict=True)
    )


def validation_case_seconds(step_s: float, windows: int, batch: int) -> float:
    """One case's sliding-window pass: its windows in batches of the training batch,
    forward only."""
    return math.ceil(windows / batch) * step_s * FORWARD_SHARE


def split_budget(
    budget: float, step_s: float, *, n_val: int, case_s: float, passes: int
) -> BudgetSplit:
    """Epochs, steps, validation interval and validation cases for ``budget`` seconds,
    given a training step's seconds, the number of validation cases, one case's
    validation seconds and the post-training passes per case."""
    # about 10 epochs (checkpoints, validations) at least: shorter epochs when slow
    steps = int(max(10, min(50, TRAINING_SHARE * budget / (10 * step_s))))
    epoch_s = steps * step_s
    n_val = max(1, n_val)
    afford = max(1, int(VALIDATION_SHARE * budget / ((1 + passes) * max(case_s, 1e-9))))
    used = min(n_val, afford)
    val_s = used * case_s
    post_s = passes * val_s
    val_every = max(1, math.ceil(val_s / (0.15 * epoch_s)))
    epochs = int(
        max(3, min(1000, (TRAINING_SHARE * budget - post_s) / (epoch_s + val_s / val_every)))
    )
    note = (
        f"measured {step_s:.3f}s per step -> {epochs} epochs of {steps} steps in "
        f"{TRAINING_SHARE:.0%} of {budget:.0f}s; validation (~{val_s:.0f}s) every "
        f"{val_every} epoch(s); post-training choice ~{post_s:.0f}s"
    )
    if used < n_val:
        note += (
            f"; validation on {used} of the {n_val} validation cases (a pass over all "
            f"takes ~{n_val * case_s:.0f}s, more than the budget affords)"
        )
    least = epoch_s + (1 + passes) * val_s  # one epoch, its validation, the post passes
    if least > TRAINING_SHARE * budget:
        note += (
            f"; the least run (one epoch of {steps} steps, one validation and the "
            f"post-training choice: ~{least:.0f}s) is more than {TRAINING_SHARE:.0%} of "
            "the budget: training stops after its first epoch and may end late"
        )
    return BudgetSplit(epochs, steps, val_every, None if used >= n_val else used, note)


def synthetic_step(model, opt, loss_fn, x, y, precision: str, device: str = "cpu") -> None:
    """One training step as the engine takes it (the probe times it, the memory
    benchmark measures it)."""
    with autocast(device, precision):
        out = model(x)
    loss = loss_fn(out.float(), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def probe_step_seconds(
    channels: int,
    classes: int,
    patch: list[int],
    batch: int,
    precision: str,
    model_kwargs: dict[str, Any],
    device: str = "cpu",
) -> float | None:
    """Seconds per training step at this patch and batch, on the plan's device: the
    best of 3 after a warm-up, cached for this machine (``core/speed.py``)."""
    from monai.losses import DiceCELoss

    from scandx.core.speed import best_of, cached_seconds
    from scandx.models import create_model

    def measure() -> float:
        torch.manual_seed(0)
        model = create_model(
            "dynunet", len(patch), channels, classes, input_size=patch, **model_kwargs
        ).to(device)
        model = guard_cpu_bf16(model, device, precision)  # as the engine trains it
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
        x = torch.randn(batch, channels, *patch, device=device)
        y = torch.randint(0, classes, (batch, 1, *patch), device=device)

        def step() -> None:
            synthetic_step(model, opt, loss_fn, x, y, precision, device)
            if device.startswith("cuda"):
                torch.cuda.synchronize()

        return best_of(step, warmup=1, repeats=3)

    probe = f"segmenter|dynunet|{channels}|{classes}|{patch}|{batch}|{sorted(model_kwargs.items())}"
    try:
        return cached_seconds(probe, device, precision, measure)
    except Exception as e:  # advice only
        log.warning("segmentation probe failed (%s)", e)
        return None
