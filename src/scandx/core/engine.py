"""The training engine: one loop for every task.

The task supplies a ``TrainingTask``: its network, its loss, the batches of an epoch
and its validation (which returns the metrics to log and a ``score``, higher is
better, or ``None`` on epochs it skips). The engine owns everything else:

- seeding: the network is built after ``torch.manual_seed(seed)``; epoch ``e`` runs
  after ``torch.manual_seed(seed * 100_003 + e)`` and the task draws its shuffle and
  augmentation from ``(seed, e)`` only, so resuming replays the remaining epochs bit
  for bit without saving any RNG state;
- device and precision (``core/device.py``): autocast for the forward pass, gradient
  scaling for fp16 on CUDA, the model and batches on the device;
- AdamW with linear warm-up then cosine decay to 1% of the rate, per step;
- one checkpoint format: ``checkpoints/last.ckpt`` after every epoch (model, optimiser,
  scheduler, scaler, epochs done, best score, epochs without improvement, best record)
  and ``checkpoints/best.ckpt`` (a copy of the best weights), written atomically and
  loaded with ``weights_only=True``; ``--resume`` continues from last.ckpt;
- early stopping after ``patience`` validated epochs without improvement (never
  before ``min_epochs``); ``log.jsonl``, one line per epoch, epochs counted from 1;
  a progress bar per epoch; ``hooks`` called with each epoch's record.

Multi-process (DDP) training belongs here and only here: wrapping the model, giving
``batches`` a rank and world size, and letting rank 0 write checkpoints and logs.
"""

from __future__ import annotations

import json
import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from scandx.core.checkpoint import load_checkpoint, save_checkpoint
from scandx.core.device import autocast, grad_scaler, runtime_device
from scandx.core.run_dir import RunDir

log = logging.getLogger(__name__)

Hook = Callable[[int, dict[str, Any]], None]  # (epoch counted from 1, its record)


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


class TrainingTask(ABC):
    """What a task gives the engine (see the module docstring)."""

    schedule: Schedule
    seed: int
    device: str
    precision: str

    @abstractmethod
    def build_model(self) -> torch.nn.Module: ...

    @abstractmethod
    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def batches(self, epoch: int, device: str) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        """The epoch's (input, target) batches, drawn from (seed, epoch) only; ``epoch``
        counts from 0."""

    @abstractmethod
    def validate(
        self, model: torch.nn.Module, epoch: int, device: str, precision: str
    ) -> dict[str, Any] | None:
        """Validation metrics of this epoch with a ``score`` (higher is better), or None
        when this epoch is not validated."""


@dataclass
class FitResult:
    model: torch.nn.Module  # best weights, on the CPU
    best: dict[str, Any]  # the best epoch's log record (epoch from 1)
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    device: str = "cpu"
    precision: str = "fp32"


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 1% of the base rate."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


def fit(
    task: TrainingTask,
    run: RunDir,
    *,
    resume: bool = False,
    hooks: list[Hook] | None = None,
    stop_after: int | None = None,
) -> FitResult:
    """Train ``task`` in ``run``; ``stop_after`` ends this call after that many epochs
    (as an interruption would: a later ``resume`` gives the uninterrupted result)."""
    s = task.schedule
    device, precision = runtime_device(task.device, task.precision)
    torch.manual_seed(task.seed)
    model = task.build_model().to(device)
    if s.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    total = s.steps_per_epoch * s.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: lr_factor(k, total, s.warmup_steps))
    scaler = grad_scaler(device, precision)

    start, best_score, bad_epochs, best, best_state = 0, -math.inf, 0, {}, None
    if resume and run.last_ckpt.exists():
        ck = load_checkpoint(run.last_ckpt)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        scaler.load_state_dict(ck["scaler"])
        start, best_score = int(ck["epochs_done"]), float(ck["best_score"])
        bad_epochs, best = int(ck["bad_epochs"]), json.loads(ck["best_record"])
        if run.best_ckpt.exists():
            best_state = load_checkpoint(run.best_ckpt)["model"]
        truncate_log(run.log_jsonl, start)
        log.info("resumed after epoch %d", start)
    elif resume:
        log.info("no checkpoint to resume from; starting at epoch 1")

    history = read_log(run.log_jsonl)
    end = s.epochs if stop_after is None else min(s.epochs, start + stop_after)
    t_start = time.perf_counter()
    for epoch in range(start, end):
        if s.patience is not None and bad_epochs >= s.patience and epoch >= s.min_epochs:
            log.info("early stop: %d validated epochs without improvement", bad_epochs)
            break
        t0 = time.perf_counter()
        torch.manual_seed(epoch_seed(task.seed, epoch))  # dropout etc.
        model.train()
        losses: list[float] = []
        bar = tqdm(
            task.batches(epoch, device),
            total=s.steps_per_epoch,
            desc=f"epoch {epoch + 1}/{s.epochs}",
            leave=False,
            disable=None,
        )
        for x, y in bar:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if s.channels_last and x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device, precision):
                out = model(x)
            loss = task.loss(out.float(), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            losses.append(loss.item())
            if len(losses) % 10 == 1:
                bar.set_postfix(loss=f"{np.mean(losses[-10:]):.4f}")
        val = task.validate(model, epoch, device, precision)
        improved = val is not None and val["score"] > best_score
        record: dict[str, Any] = {"epoch": epoch + 1, "train_loss": float(np.mean(losses))}
        record.update({k: v for k, v in (val or {}).items() if k != "score"})
        record.update(
            validated=val is not None,
            lr=float(opt.param_groups[0]["lr"]),
            seconds=round(time.perf_counter() - t0, 2),
            best=improved,
        )
        if improved:
            best_score, bad_epochs, best = float(val["score"]), 0, record  # type: ignore[index]
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            save_checkpoint(run.best_ckpt, {"model": best_state, "epoch": epoch + 1})
        elif val is not None:
            bad_epochs += 1
        history.append(record)
        with open(run.log_jsonl, "a") as f:
            f.write(json.dumps(record) + "\n")
        save_checkpoint(
            run.last_ckpt,
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "scaler": scaler.state_dict(),
                "epochs_done": epoch + 1,
                "best_score": best_score,
                "bad_epochs": bad_epochs,
                "best_record": json.dumps(best),
            },
        )
        log.info(_epoch_line(record, s.epochs))
        for hook in hooks or []:
            hook(epoch + 1, record)
    if best_state is not None:
        model.load_state_dict(best_state)
    return FitResult(
        model.cpu().eval(),
        best or (history[-1] if history else {}),
        history,
        round(time.perf_counter() - t_start, 1),
        device,
        precision,
    )


def _epoch_line(record: dict[str, Any], epochs: int) -> str:
    head = f"epoch {record['epoch']}/{epochs}  loss {record['train_loss']:.4f}"
    skip = {"epoch", "train_loss", "validated", "lr", "seconds", "best"}
    vals = [f"{k} {v:.4f}" for k, v in record.items() if k not in skip and isinstance(v, float)]
    val_txt = "  ".join(vals) if record["validated"] else "(not validated this epoch)"
    return f"{head}  {val_txt}  {record['seconds']:.1f}s{'  *best' if record['best'] else ''}"


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_log(path: Path, epochs_done: int) -> None:
    """Drop log lines of epochs after the checkpoint (a kill between log and checkpoint)."""
    kept = [r for r in read_log(path) if r["epoch"] <= epochs_done]
    path.write_text("".join(json.dumps(r) + "\n" for r in kept))
