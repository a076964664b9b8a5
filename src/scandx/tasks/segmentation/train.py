"""Patch-based U-Net training: foreground oversampling, flips + augment.py, Dice + CE,
bf16 autocast on capable CPUs, validation Dice by sliding window, exact resume."""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scandx.core.checkpoint import load_checkpoint, save_checkpoint
from scandx.models import create_model
from scandx.tasks.classification.training.loop import lr_factor, truncate_log
from scandx.tasks.segmentation import augment
from scandx.tasks.segmentation.infer import predict_probabilities, roi_box
from scandx.tasks.segmentation.metrics import dice
from scandx.tasks.segmentation.plan import SegPlan

log = logging.getLogger(__name__)


@dataclass
class SegData:
    images: list[np.ndarray]  # normalised (C, *S)
    labels: list[np.ndarray]  # (*S) int64
    fovs: list[np.ndarray | None]


def build_seg_model(plan: SegPlan) -> torch.nn.Module:
    return create_model(
        plan.model,
        plan.spatial_dims,
        plan.in_channels,
        plan.n_classes,
        input_size=plan.patch_size,
        **plan.model_kwargs,
    )


def _crop(a: np.ndarray, start: list[int], size: list[int]) -> np.ndarray:
    """Crop the trailing spatial axes of ``a`` at ``start``, zero-padding past the edge."""
    lead = a.ndim - len(size)
    out = np.zeros(a.shape[:lead] + tuple(size), a.dtype)
    src, dst = [slice(None)] * lead, [slice(None)] * lead
    for s, n, dim in zip(start, size, a.shape[lead:], strict=True):
        lo, hi = max(s, 0), min(s + n, dim)
        src.append(slice(lo, hi))
        dst.append(slice(lo - s, hi - s))
    out[tuple(dst)] = a[tuple(src)]
    return out


def sample_batch(
    data: SegData, plan: SegPlan, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    size = plan.window  # 1 along the slice axis for a 2D U-Net on volumes
    for _ in range(plan.batch_size):
        i = int(rng.integers(len(data.images)))
        img, lab = data.images[i], data.labels[i]
        box = roi_box(data.fovs[i] if plan.use_fov else None, lab.shape)
        lo_corner = [b.start for b in box]
        shape = [b.stop - b.start for b in box]
        fg = np.flatnonzero(lab > 0) if rng.random() < plan.foreground_fraction else None
        if fg is not None and fg.size:
            centre = np.unravel_index(int(fg[rng.integers(fg.size)]), lab.shape)
            start = [
                int(c) - n // 2 + int(rng.integers(-n // 4, n // 4 + 1))
                for c, n in zip(centre, size, strict=True)
            ]
        else:
            start = [
                lo + int(rng.integers(min(0, d - n), max(0, d - n) + 1))
                for lo, d, n in zip(lo_corner, shape, size, strict=True)
            ]
        x, y = _crop(img, start, size), _crop(lab, start, size)
        if plan.slice_axis is not None:
            x, y = x.squeeze(plan.slice_axis + 1), y.squeeze(plan.slice_axis)
        if plan.flips:
            for axis in range(plan.spatial_dims):
                if rng.random() < 0.5:
                    x, y = np.flip(x, axis + 1), np.flip(y, axis)
        xs.append(np.ascontiguousarray(x))
        ys.append(np.ascontiguousarray(y))
    xb, yb = torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))[:, None]
    if plan.spatial_augment:
        xb, yb = augment.spatial(xb, yb, rng)
    if plan.intensity_augment:
        xb = augment.intensity(xb, rng)
    return xb, yb


def validation_dice(model: torch.nn.Module, val: SegData, plan: SegPlan) -> float:
    scores = []
    for img, lab, fov in zip(val.images, val.labels, val.fovs, strict=True):
        pred = predict_probabilities(model, img, plan, tta=False, fov=fov).argmax(0)
        inside = np.ones(lab.shape, bool) if fov is None else fov
        per = [dice((pred == k) & inside, (lab == k) & inside) for k in range(1, plan.n_classes)]
        scores.append(float(np.mean(per)))
    return float(np.mean(scores))


def fit_segmentation(
    plan: SegPlan,
    train: SegData,
    val: SegData,
    out: Path,
    resume: bool = False,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Train; writes checkpoints/{last,best}.ckpt and log.jsonl; returns best record + model.

    ``stop_after`` ends this call after that many epochs (as an interruption would); a
    later call with ``resume`` continues to the same result as one uninterrupted run."""
    from monai.losses import DiceCELoss

    torch.manual_seed(plan.seed)
    model = build_seg_model(plan)
    opt = torch.optim.AdamW(model.parameters(), lr=plan.lr, weight_decay=plan.weight_decay)
    total = plan.epochs * plan.steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, total, plan.steps_per_epoch)
    )
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)
    ckpt_dir = out / "checkpoints"
    start, best, best_state = 0, {"val_dice": -1.0}, None
    if resume and (ckpt_dir / "last.ckpt").exists():
        state = load_checkpoint(ckpt_dir / "last.ckpt")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start, best = int(state["epoch"]) + 1, json.loads(state["best"])
        if (ckpt_dir / "best.ckpt").exists():
            best_state = load_checkpoint(ckpt_dir / "best.ckpt")["model"]
        truncate_log(out / "log.jsonl", start)
        log.info("resuming at epoch %d", start + 1)
    log_path = out / "log.jsonl"
    amp = plan.precision == "bf16"
    end = plan.epochs if stop_after is None else min(plan.epochs, start + stop_after)
    for epoch in range(start, end):
        t0 = time.perf_counter()
        rng = np.random.default_rng([plan.seed, epoch])  # exact resume: seeded per epoch
        torch.manual_seed(plan.seed * 100_003 + epoch)
        model.train()
        losses = []
        for _ in range(plan.steps_per_epoch):
            x, y = sample_batch(train, plan, rng)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                logits = model(x)
            loss = loss_fn(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        validate = (epoch + 1) % plan.val_every == 0 or epoch + 1 == plan.epochs
        vd = validation_dice(model, val, plan) if validate else float("nan")
        record = {
            "epoch": epoch,
            "train_loss": float(np.mean(losses)),
            "val_dice": vd if validate else None,  # null in log.jsonl: not validated
            "lr": opt.param_groups[0]["lr"],
            "seconds": round(time.perf_counter() - t0, 2),
        }
        if validate and vd > best["val_dice"]:
            best = dict(record)
            best_state = copy.deepcopy(model.state_dict())
            save_checkpoint(ckpt_dir / "best.ckpt", {"model": best_state, "epoch": epoch})
        with open(log_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        save_checkpoint(
            ckpt_dir / "last.ckpt",
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "epoch": epoch,
                "best": json.dumps(best),
            },
        )
        log.info(
            "epoch %d/%d loss %.4f val Dice %.4f (best %.4f) %.1fs",
            epoch + 1,
            plan.epochs,
            record["train_loss"],
            vd,
            best["val_dice"],
            record["seconds"],
        )
    if best_state is not None:
        model.load_state_dict(best_state)
    return {"best": best, "model": model}
