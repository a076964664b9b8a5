"""Classification's part of the training engine (``core/engine.py``): the network, the
loss, the epoch's batches (seeded shuffle or class-balanced sampling, augmentation on
the device) and validation (macro AUC, under autocast; the score is the AUC, or minus
the validation loss where AUC is undefined; AUCs within half the AUC's standard error
of the best are ties, which the later epoch wins).

Under DDP (``core/distributed.py``) every rank draws the same epoch order from (seed,
epoch) and takes its contiguous part of each step's global batch (``shard_rows``), with
its own augmentation generator from (seed, epoch, rank); each rank validates a
contiguous shard of the validation images and the logits are gathered, so every rank
scores the same predictions."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from scandx.core import distributed as ddp
from scandx.core.engine import DEADLINE_FRACTION, Schedule, TrainingTask, epoch_seed
from scandx.core.health import Health
from scandx.core.training_task import TIE_STANDARD_ERRORS
from scandx.models import create_model
from scandx.tasks.classification.evaluation.metrics import macro_auc, macro_auc_standard_error
from scandx.tasks.classification.inference.scoring import predict_logits, probabilities
from scandx.tasks.classification.plan import Plan
from scandx.tasks.classification.training.augment import augment_batch
from scandx.tasks.classification.training.losses import create_loss


@dataclass
class TrainData:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor


def build_model(plan: Plan) -> torch.nn.Module:
    return create_model(
        plan.model,
        plan.spatial_dims,
        plan.in_channels,
        len(plan.classes),
        input_size=plan.input_size,
        **plan.model_kwargs,
    )


def epoch_order(plan: Plan, y: torch.Tensor, epoch: int) -> tuple[torch.Tensor, torch.Generator]:
    """The epoch's sample order and augmentation generator, from (seed, epoch) only."""
    g = torch.Generator().manual_seed(epoch_seed(plan.seed, epoch))
    n = len(y)
    if plan.sampler == "balanced" and plan.task != "multilabel":
        counts = torch.bincount(y, minlength=len(plan.classes)).float()
        weights = (1.0 / counts.clamp(min=1))[y]
        return torch.multinomial(weights, n, replacement=True, generator=g), g
    return torch.randperm(n, generator=g), g


class ClassificationTraining(TrainingTask):
    def __init__(self, plan: Plan, data: TrainData) -> None:
        self.plan, self.data = plan, data
        self.seed, self.device, self.precision = plan.seed, plan.device, plan.precision
        steps = math.ceil(len(data.y_train) / plan.batch_size)
        self.schedule = Schedule(
            epochs=plan.epochs,
            steps_per_epoch=steps,
            lr=plan.lr,
            weight_decay=plan.weight_decay,
            warmup_steps=steps * plan.warmup_epochs,
            patience=plan.early_stopping_patience,
            min_epochs=plan.min_epochs,
            channels_last=plan.channels_last,
            deadline_s=DEADLINE_FRACTION * plan.time_budget_s if plan.time_budget_s else None,
        )
        self.criterion = create_loss(plan)
        self.health = Health(chance=0.5)  # the score is the validation AUC
        self.mean = torch.tensor(plan.intensity_mean)
        self.std = torch.tensor(plan.intensity_std)

    def build_model(self) -> torch.nn.Module:
        return build_model(self.plan)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.criterion = self.criterion.to(output.device)
        return self.criterion(output, target.float() if self.plan.task == "multilabel" else target)

    def batches(self, epoch: int, device: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order, gen = epoch_order(self.plan, self.data.y_train, epoch)
        if self.world > 1:  # the order is shared; the augmentation is the rank's own
            state = np.random.SeedSequence([self.plan.seed, epoch, self.rank]).generate_state(1)
            gen = torch.Generator().manual_seed(int(state[0]))
        size = self.plan.batch_size
        for b in range(self.schedule.steps_per_epoch):
            idx = order[b * size : (b + 1) * size]
            if self.world > 1:
                idx = ddp.shard_rows(idx, self.rank, self.world)
            x = self.data.x_train[idx].to(device, non_blocking=True)
            x = augment_batch(x, self.plan.augmentation, self.mean, self.std, gen)  # on device
            yield x, self.data.y_train[idx]

    def validate(
        self, model: torch.nn.Module, epoch: int, device: str, precision: str
    ) -> dict[str, float]:
        n = len(self.data.x_val)
        rows = ddp.shard_range(n, self.rank, self.world)  # all of them in one process
        x = self.data.x_val[rows.start : rows.stop]
        logits = predict_logits(model, x, device, precision)
        logits = ddp.gather_rows(logits, n)
        probs = probabilities(self.plan.task, logits).numpy()
        val_loss = float(self.loss(logits.to(device), self.data.y_val.to(device)).item())
        val_auc = macro_auc(self.plan.task, self.data.y_val.numpy(), probs)
        score = val_auc if not np.isnan(val_auc) else -val_loss
        constant = bool(np.ptp(probs, axis=0).max() < 1e-6) if len(probs) > 1 else False
        se = macro_auc_standard_error(self.plan.task, self.data.y_val.numpy(), probs)
        tolerance = TIE_STANDARD_ERRORS * se if not np.isnan(val_auc) and not np.isnan(se) else 0.0
        return {
            "val_loss": val_loss,
            "val_auc": val_auc,
            "score": score,
            "constant": constant,
            "tolerance": tolerance,
        }
