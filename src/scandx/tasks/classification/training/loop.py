"""The training loop: one small function driven by the plan.

Per epoch: seeded shuffle and augmentation (from (seed, epoch) only, so resume
is exact), a step per batch under autocast, validation in fp32, one line in
``log.jsonl``, ``checkpoints/last.ckpt`` always and ``checkpoints/best.ckpt``
(a copy of the weights, not a reference) when validation AUC improves.
Early stopping after ``plan.early_stopping_patience`` epochs without improvement.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from scandx.core.checkpoint import load_checkpoint, save_checkpoint
from scandx.models import create_model
from scandx.tasks.classification.evaluation.metrics import macro_auc
from scandx.tasks.classification.plan import Plan
from scandx.tasks.classification.training.augment import augment_batch
from scandx.tasks.classification.training.losses import create_loss

log = logging.getLogger(__name__)

Hook = Callable[[int, dict[str, Any]], None]


@dataclass
class TrainData:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor


def build_model(plan: Plan) -> torch.nn.Module:
    out = len(plan.classes)
    return create_model(
        plan.model,
        plan.spatial_dims,
        plan.in_channels,
        out,
        input_size=plan.input_size,
        **plan.model_kwargs,
    )


def probabilities(task: str, logits: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(logits) if task == "multilabel" else torch.softmax(logits, dim=1)


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module,
    x: torch.Tensor,
    device: str,
    batch: int = 256,
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Logits batch by batch, in fp32 unless ``autocast_dtype`` is given.

    Evaluation and prediction always use fp32 (a probability must not depend on
    its batch); only per-epoch validation during training runs under autocast.
    """
    model.eval()
    out = []
    enabled = autocast_dtype is not None
    with torch.autocast(device, dtype=autocast_dtype or torch.float32, enabled=enabled):
        for i in range(0, len(x), batch):
            out.append(model(x[i : i + batch].to(device)).float().cpu())
    return torch.cat(out) if out else torch.empty(0)


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 1% of the base rate."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def runtime_device(plan: Plan) -> tuple[str, str]:
    """The plan's device and precision, or this CPU's when a CUDA plan meets no GPU."""
    if plan.device == "cuda" and not torch.cuda.is_available():
        from scandx.tasks.classification.planner import cpu_has_bf16

        precision = "bf16" if cpu_has_bf16() else "fp32"
        log.warning(
            "plan asks for CUDA but no GPU is visible: training on the CPU in %s", precision
        )
        return "cpu", precision
    return plan.device, plan.precision


def epoch_order(plan: Plan, y: torch.Tensor, epoch: int) -> tuple[torch.Tensor, torch.Generator]:
    """The epoch's sample order and augmentation generator, from (seed, epoch) only."""
    g = torch.Generator().manual_seed(plan.seed * 100_003 + epoch)
    n = len(y)
    if plan.sampler == "balanced" and plan.task != "multilabel":
        counts = torch.bincount(y, minlength=len(plan.classes)).float()
        weights = (1.0 / counts.clamp(min=1))[y]
        return torch.multinomial(weights, n, replacement=True, generator=g), g
    return torch.randperm(n, generator=g), g


def fit(
    plan: Plan,
    data: TrainData,
    run_dir: Path,
    *,
    resume: bool = False,
    hooks: list[Hook] | None = None,
) -> dict[str, Any]:
    """Train per the plan; returns the best epoch's record and the best weights."""
    device, precision = runtime_device(plan)
    torch.manual_seed(plan.seed)
    model = build_model(plan).to(device)
    if plan.channels_last:
        model = model.to(memory_format=torch.channels_last)
    criterion = create_loss(plan).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=plan.lr, weight_decay=plan.weight_decay)
    steps_per_epoch = math.ceil(len(data.y_train) / plan.batch_size)
    total = steps_per_epoch * plan.epochs
    warmup = steps_per_epoch * plan.warmup_epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, warmup))
    scaler = torch.amp.GradScaler(device, enabled=precision == "fp16")
    amp_dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    mean = torch.tensor(plan.intensity_mean)
    std = torch.tensor(plan.intensity_std)

    ckpt_dir = run_dir / "checkpoints"
    log_path = run_dir / "log.jsonl"
    start, best, best_state, bad_epochs = 0, -math.inf, None, 0
    if resume and (ckpt_dir / "last.ckpt").exists():
        ck = load_checkpoint(ckpt_dir / "last.ckpt")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        scaler.load_state_dict(ck["scaler"])
        start, best, bad_epochs = int(ck["epoch"]) + 1, float(ck["best"]), int(ck["bad_epochs"])
        if (ckpt_dir / "best.ckpt").exists():
            best_state = load_checkpoint(ckpt_dir / "best.ckpt")["model"]
        truncate_log(log_path, start)
        log.info("resumed from epoch %d (best val AUC %.4f)", start, best)
    elif resume:
        log.info("no checkpoint to resume from; starting at epoch 0")

    history: list[dict[str, Any]] = _read_log(log_path)
    for epoch in range(start, plan.epochs):
        if bad_epochs >= plan.early_stopping_patience and epoch >= plan.min_epochs:
            break
        t0 = time.perf_counter()
        torch.manual_seed(plan.seed * 100_003 + epoch)  # dropout etc.
        order, gen = epoch_order(plan, data.y_train, epoch)
        model.train()
        losses = []
        bar = tqdm(
            range(steps_per_epoch),
            desc=f"epoch {epoch + 1}/{plan.epochs}",
            leave=False,
            disable=None,
        )
        for b in bar:
            idx = order[b * plan.batch_size : (b + 1) * plan.batch_size]
            x = data.x_train[idx].to(device, non_blocking=True)
            x = augment_batch(x, plan.augmentation, mean, std, gen)  # on the device
            y = data.y_train[idx].to(device)
            if plan.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device, dtype=amp_dtype, enabled=precision != "fp32"):
                logits = model(x)
            loss = criterion(logits.float(), y.float() if plan.task == "multilabel" else y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            losses.append(loss.item())
            if b % 10 == 0:
                best_txt = f"{best:.4f}" if best > -math.inf else "-"
                bar.set_postfix(loss=f"{np.mean(losses[-10:]):.4f}", best_val_auc=best_txt)
        val_amp = amp_dtype if precision != "fp32" else None
        val_logits = predict_logits(model, data.x_val, device, autocast_dtype=val_amp)
        val_probs = probabilities(plan.task, val_logits).numpy()
        yv = data.y_val.float() if plan.task == "multilabel" else data.y_val
        val_loss = float(criterion(val_logits.to(device), yv.to(device)).item())
        val_auc = macro_auc(plan.task, data.y_val.numpy(), val_probs)
        score = val_auc if not np.isnan(val_auc) else -val_loss
        improved = score > best
        if improved:
            best, bad_epochs = score, 0
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            save_checkpoint(ckpt_dir / "best.ckpt", {"model": best_state, "epoch": epoch})
        else:
            bad_epochs += 1
        record = {
            "epoch": epoch,
            "train_loss": float(np.mean(losses)),
            "val_loss": val_loss,
            "val_auc": val_auc,
            "lr": float(opt.param_groups[0]["lr"]),
            "seconds": round(time.perf_counter() - t0, 2),
            "best": improved,
        }
        history.append(record)
        with open(log_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        save_checkpoint(
            ckpt_dir / "last.ckpt",
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "scaler": scaler.state_dict(),
                "epoch": epoch,
                "best": best,
                "bad_epochs": bad_epochs,
            },
        )
        log.info(
            "epoch %d/%d  loss %.4f  val_loss %.4f  val_auc %.4f  %.1fs%s",
            epoch + 1,
            plan.epochs,
            record["train_loss"],
            val_loss,
            val_auc,
            record["seconds"],
            "  *" if improved else "",
        )
        for hook in hooks or []:
            hook(epoch, record)
    if best_state is None:
        best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    best_record = max(
        (r for r in history if r.get("best")),
        key=lambda r: r["epoch"],
        default=history[-1] if history else {},
    )
    return {"model": model.cpu(), "best": best_record, "history": history}


def _read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_log(path: Path, start_epoch: int) -> None:
    """Drop log lines of epochs after the checkpoint (a kill between log and checkpoint)."""
    kept = [r for r in _read_log(path) if r["epoch"] < start_epoch]
    path.write_text("".join(json.dumps(r) + "\n" for r in kept))
