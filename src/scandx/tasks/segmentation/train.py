"""Patch-based U-Net training through the shared engine (``core/engine.py``):
foreground oversampling, flips + augment.py, Dice + CE, validation Dice by sliding
window."""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from scandx.core import distributed as ddp
from scandx.core.engine import DEADLINE_FRACTION, Schedule, TrainingTask
from scandx.core.health import Health
from scandx.core.training_task import TIE_STANDARD_ERRORS
from scandx.tasks.segmentation import augment
from scandx.tasks.segmentation.budget import post_training_passes
from scandx.tasks.segmentation.infer import predict_probabilities, roi_box
from scandx.tasks.segmentation.metrics import dice
from scandx.tasks.segmentation.plan import SegPlan
from scandx.tasks.segmentation.predictor import build_seg_model

log = logging.getLogger(__name__)


@dataclass
class SegData:
    """Prepared cases (``case_cache.prepared_case``; memory-mapped from the cache), with
    each case's foreground locations and region-of-interest box, so that sampling a patch
    reads only the patch. Both are found on first use when not given."""

    images: list[np.ndarray]  # normalised (C, *S)
    labels: list[np.ndarray]  # (*S) integer labels
    fovs: list[np.ndarray | None]
    foreground: list[np.ndarray | None] | None = None  # flat indices of foreground voxels
    boxes: list[tuple[slice, ...] | None] | None = None  # region of interest

    def foreground_of(self, i: int) -> np.ndarray:
        from scandx.tasks.segmentation.case_cache import foreground_index

        if self.foreground is None:
            self.foreground = [None] * len(self.labels)
        if self.foreground[i] is None:
            self.foreground[i] = foreground_index(np.asarray(self.labels[i]))
        return self.foreground[i]  # type: ignore[return-value]

    def box_of(self, i: int, use_fov: bool) -> tuple[slice, ...]:
        if self.boxes is None:
            self.boxes = [None] * len(self.labels)
        if self.boxes[i] is None:
            fov = self.fovs[i] if use_fov else None
            self.boxes[i] = roi_box(fov, self.labels[i].shape)
        return self.boxes[i]  # type: ignore[return-value]


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
        box = data.box_of(i, plan.use_fov)
        lo_corner = [b.start for b in box]
        shape = [b.stop - b.start for b in box]
        fg = data.foreground_of(i) if rng.random() < plan.foreground_fraction else None
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
        ys.append(np.ascontiguousarray(y, dtype=np.int64))
    xb, yb = torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))[:, None]
    if plan.spatial_augment:
        xb, yb = augment.spatial(xb, yb, rng)
    if plan.intensity_augment:
        xb = augment.intensity(xb, rng)
    return xb, yb


def validation_dice(
    model: torch.nn.Module, val: SegData, plan: SegPlan, rank: int = 0, world: int = 1
) -> list[float]:
    """Dice of each validation case (the mean over its foreground labels); under DDP each
    rank predicts its contiguous shard of the cases and the scores are gathered (every
    rank, the same list)."""
    n = len(val.images)
    scores = []
    for i in ddp.shard_range(n, rank, world):
        img, lab, fov = val.images[i], val.labels[i], val.fovs[i]
        pred = predict_probabilities(model, img, plan, tta=False, fov=fov).argmax(0)
        inside = np.ones(lab.shape, bool) if fov is None else fov
        per = [dice((pred == k) & inside, (lab == k) & inside) for k in range(1, plan.n_classes)]
        scores.append(float(np.mean(per)))
    if world > 1:
        scores = ddp.gather_rows(torch.tensor(scores, dtype=torch.float64), n).tolist()
    return scores


def tie_tolerance(scores: list[float]) -> float:
    """``TIE_STANDARD_ERRORS`` standard errors of the mean Dice over the cases (0 for
    fewer than 2 cases, where there is no spread to measure)."""
    if len(scores) < 2:
        return 0.0
    return TIE_STANDARD_ERRORS * float(np.std(scores, ddof=1)) / math.sqrt(len(scores))


class SegTraining(TrainingTask):
    """Segmentation's part of the engine: DynUNet, Dice + CE, patches sampled from
    (seed, epoch), validation Dice by sliding window every ``val_every`` epochs (and
    at the last), which is the score that picks the best checkpoint.

    Under DDP every rank samples its share of the batch (``batch_share``, at least one
    patch) from all training cases with its own generator, seeded (seed, epoch, rank);
    validation is sharded by case and gathered (``validation_dice``)."""

    def __init__(self, plan: SegPlan, train: SegData, val: SegData, elapsed_s: float = 0.0) -> None:
        """``elapsed_s``: what the command spent before training (planning, reading the
        cases), which the budget's deadline counts."""
        from monai.losses import DiceCELoss

        self.plan, self.train, self.val = plan, train, val
        self.seed, self.device, self.precision = plan.seed, plan.device, plan.precision
        self.schedule = Schedule(
            epochs=plan.epochs,
            steps_per_epoch=plan.steps_per_epoch,
            lr=plan.lr,
            weight_decay=plan.weight_decay,
            warmup_steps=plan.steps_per_epoch,
            grad_clip=12.0,  # nnU-Net's gradient-norm clip
            deadline_s=(
                DEADLINE_FRACTION * plan.time_budget_s - elapsed_s if plan.time_budget_s else None
            ),
        )
        self.health = Health(chance=0.0)  # the score is the validation Dice
        self.loss_fn = DiceCELoss(
            to_onehot_y=True, softmax=True, include_background=False, batch=True
        )

    def build_model(self) -> torch.nn.Module:
        return build_seg_model(self.plan)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(output, target)

    def batches(self, epoch: int, device: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        plan = self.plan
        rng = np.random.default_rng([plan.seed, epoch])  # exact resume
        if self.world > 1:  # this rank's patches, from all training cases
            rng = np.random.default_rng([plan.seed, epoch, self.rank])
            plan = copy.copy(plan)
            plan.batch_size = max(1, ddp.batch_share(self.plan.batch_size, self.rank, self.world))
        for _ in range(self.plan.steps_per_epoch):
            yield sample_batch(self.train, plan, rng)

    def validate(
        self, model: torch.nn.Module, epoch: int, device: str, precision: str
    ) -> dict[str, float] | None:
        plan = self.plan
        last = self.final_epoch or plan.epochs
        if (epoch + 1) % plan.val_every and epoch + 1 != last:
            return None
        scores = validation_dice(model, self.val, plan, self.rank, self.world)
        vd = float(np.mean(scores))
        return {"val_dice": vd, "score": vd, "tolerance": tie_tolerance(scores)}

    def seconds_after_training(self, validation_s: float) -> float:
        """The last epoch's validation (when the shortened schedule ends off the
        ``val_every`` grid) and the post-training passes (``choose_postprocessing``)."""
        plan = self.plan
        flip_axes = plan.data_dims - (plan.slice_axis is not None)
        return validation_s * (1 + post_training_passes(plan.tta_flips, flip_axes))
