"""The classification planner's ladder of networks, and the choice within a budget.

Rungs run from the most capable network to the cheapest, scaling width, depth and
input resolution together: ResNet-18, ResNet-18 at half width, ResNet-10 at half
width, ResNet-10 at quarter width, then the seed articles' small CNN (with batch
norm). For images larger than 64 px every network is also tried at smaller input
sizes (224 down to 64 px), walking the (network, size) grid diagonally so that a
half-width network at full resolution comes before a full-width one at a quarter
of it.

The choice: the first rung whose measured epoch (training steps with augmentation,
validation, checkpoints) allows at least ``MIN_EPOCHS`` epochs in ``TRAIN_FRACTION``
of the budget. Fewer epochs than that leave a cosine schedule unfinished and cost
more accuracy than the larger network gains (measured on PneumoniaMNIST, see
docs/benchmarks.md); more epochs than ``MAX_EPOCHS`` add nothing. Each rung's
timing is the best of several steps, cached per machine (``core/speed.py``), so the
same data, budget and seed on the same machine give the same plan.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from scandx.core.device import guard_cpu_bf16
from scandx.core.speed import best_of, cached_seconds
from scandx.models import create_model, min_input_size

log = logging.getLogger(__name__)

SIZES = (224, 192, 160, 128, 96, 64)
MIN_EPOCHS = 20
MAX_EPOCHS = 200
TRAIN_FRACTION = 0.85  # of the budget planned for training; the engine stops at 0.95
NETWORKS: list[tuple[str, dict[str, Any], str]] = [
    ("resnet18", {}, "ResNet-18"),
    ("resnet18", {"width": 0.5}, "ResNet-18 half width"),
    ("resnet10", {"width": 0.5}, "ResNet-10 half width"),
    ("resnet10", {"width": 0.25}, "ResNet-10 quarter width"),
    ("simple-cnn", {}, "small CNN (2 conv + BN)"),
]


@dataclass
class Pick:
    name: str
    size: int
    kwargs: dict[str, Any]
    shape: list[int]
    epochs: int
    notes: list[str] = field(default_factory=list)


def rungs(native: int, model: str | None, dims: int) -> list[tuple[str, dict[str, Any], str, int]]:
    """(model, kwargs, label, in-plane size), most capable first."""
    if native <= 64:
        sizes = [native]
    elif dims == 3:
        sizes = [64]  # a 3D step costs ~depth times a 2D one
    else:
        sizes = [s for s in SIZES if s <= native] or [64]
    nets = [(model, {}, model)] if model else NETWORKS
    grid = []
    for i, (name, kwargs, label) in enumerate(nets):
        ok = [s for s in sizes if s >= min_input_size(name)] or [min_input_size(name)]
        for j, size in enumerate(ok):
            extra = dict(kwargs)
            if name.startswith("resnet"):
                extra["small_stem"] = size <= 32 and dims == 2
            grid.append((i + j, j, name, extra, label, size))
    grid.sort(key=lambda g: (g[0], g[1]))
    return [(name, kw, label, size) for _, _, name, kw, label, size in grid]


def choose_network(
    native: int,
    model: str | None,
    dims: int,
    depth: int | None,
    channels: int,
    batch: int,
    n_classes: int,
    n_train: int,
    n_val: int,
    budget: float,
    device: str,
    precision: str,
    probe: bool = True,
    network: dict[str, Any] | None = None,
) -> Pick:
    """Walk the ladder; the first rung allowing MIN_EPOCHS epochs, else the cheapest.
    ``network`` (a pretrained encoder's model, model_kwargs, input_size): the one rung."""
    steps = math.ceil(n_train / batch)
    val_steps = math.ceil(max(n_val, 1) / batch)
    train_s = TRAIN_FRACTION * budget
    tried: list[str] = []
    options = rungs(native, model, dims)
    if network is not None:
        size = int(network["input_size"][-1])
        options = [(network["model"], dict(network["model_kwargs"]), "pretrained network", size)]
    pick = None
    for k, (name, kwargs, label, size) in enumerate(options):
        shape = [size, size] if depth is None else [max(depth, min_input_size(name)), size, size]
        if network is not None:
            shape = list(network["input_size"])
        if not probe:
            return Pick(name, size, kwargs, shape, 30, [f"{label} at {size}px; 30 epochs"])
        limit = train_s / MIN_EPOCHS / (steps + val_steps / 3)  # step seconds allowed
        step = probe_step(name, kwargs, channels, shape, batch, n_classes, device, precision, limit)
        epoch_s = step * (steps + val_steps / 3) + _checkpoint_seconds(name, kwargs, channels)
        epochs = int(min(MAX_EPOCHS, train_s // epoch_s))
        what = f"{label} at {size}px: {epoch_s:.1f}s/epoch -> {epochs} epochs"
        last = k == len(options) - 1
        if epochs >= MIN_EPOCHS or last:
            why = (
                f"the most capable rung allowing >= {MIN_EPOCHS} epochs"
                if epochs >= MIN_EPOCHS
                else f"the cheapest rung; fewer than {MIN_EPOCHS} epochs fit"
            )
            if epochs < 3:  # the least a plan holds; the budget's deadline still ends training
                why += "; 3 epochs planned (the least), the deadline stops training in time"
            pick = Pick(name, size, kwargs, shape, max(3, epochs))
            pick.notes = [
                *(f"ladder: {t}: fewer than {MIN_EPOCHS}, not chosen" for t in tried),
                f"ladder: {what} in {TRAIN_FRACTION:.0%} of the {budget:.0f}s budget: "
                f"chosen, {why}",
            ]
            break
        tried.append(what)
    assert pick is not None
    return pick


def probe_step(
    name: str,
    kwargs: dict[str, Any],
    channels: int,
    shape: list[int],
    batch: int,
    classes: int,
    device: str,
    precision: str,
    limit_s: float = math.inf,
) -> float:
    """Seconds per training step (forward, loss, backward, AdamW, augmentation-sized
    extra work) at ``batch``: best of 5 after two warm-up steps (in a new process the
    first steps of a network run up to 2x slower, and single steps vary by +-20%; best
    of 3 after one gave plans of 26 and 43 epochs in two runs), cached for this machine. A
    warm-up step over 3x ``limit_s`` already rules the rung out and is what's stored."""
    probe = f"classifier|{name}|{sorted(kwargs.items())}|{channels}|{shape}|{batch}|{classes}"

    def measure() -> float:
        torch.manual_seed(0)
        net = create_model(name, len(shape), channels, classes, input_size=shape, **kwargs)
        net = guard_cpu_bf16(net.to(device), device, precision)  # as the engine trains it
        x = torch.randn(batch, channels, *shape, device=device)
        if len(shape) == 2:
            net = net.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
        y = torch.randint(0, classes, (batch,), device=device)
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        theta = torch.eye(len(shape), len(shape) + 1, device=device).expand(batch, -1, -1)

        def step() -> None:
            grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
            xa = torch.nn.functional.grid_sample(x, grid, align_corners=False)
            with torch.autocast(device, dtype=dtype, enabled=precision != "fp32"):
                loss = torch.nn.functional.cross_entropy(net(xa).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            if device == "cuda":
                torch.cuda.synchronize()

        first = best_of(step, warmup=0, repeats=1)
        if first > 3 * limit_s:
            return first
        return best_of(step, warmup=1, repeats=5)

    try:
        return cached_seconds(probe, device, precision, measure)
    except Exception as e:  # the probe is advice; never fail a plan on it
        log.warning("throughput probe of %s failed (%s)", name, e)
        return math.inf


def _checkpoint_seconds(name: str, kwargs: dict[str, Any], channels: int) -> float:
    """Writing last.ckpt (weights + AdamW moments) each epoch: ~12 bytes a parameter."""
    params = sum(
        p.numel() for p in create_model(name, 2, channels, 2, [64, 64], **kwargs).parameters()
    )
    return 0.05 + params * 12 / 400e6
