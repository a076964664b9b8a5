"""Spending the rest of the time budget when training converged early.

Early stopping can end a run with much of its budget unused. When the time left
allows a second network at least as many epochs as the first needed to reach its
best (and 5 at least), a second member is trained from the next seed, with the same
plan, in ``RUN/members/seed<k>/`` (its own checkpoints and log, resumable). The
validation data decide: the two are kept as one ``SeedEnsemble`` (mean logits,
``model_kwargs["members"] = 2``) only when the ensemble's validation AUC beats the
first network's; otherwise the first network stands alone. Either way the plan's
notes say what was tried and why it was kept or not.
"""

from __future__ import annotations

import copy
import logging
import math

import numpy as np
import torch

from scandx.core.distributed import world_size
from scandx.core.engine import DEADLINE_FRACTION, FitResult, Hook, fit
from scandx.core.run_dir import RunDir
from scandx.models.registry import SeedEnsemble
from scandx.tasks.classification.evaluation.metrics import macro_auc
from scandx.tasks.classification.inference.scoring import predict_logits, probabilities
from scandx.tasks.classification.plan import Plan
from scandx.tasks.classification.training.loop import ClassificationTraining, TrainData

log = logging.getLogger(__name__)

RESERVE = 0.05  # of the budget kept for what follows training (calibration, saving)
MIN_GAIN = 0.001  # validation AUC the ensemble must add


def second_member_epochs(plan: Plan, first: FitResult) -> int:
    """Epochs a second member can train in what is left of the budget (0: none)."""
    if not plan.time_budget_s or plan.model_kwargs.get("members", 1) > 1 or not first.history:
        return 0
    if first.stopped != "early stop":
        return 0
    spent = sum(float(r.get("seconds", 0.0)) for r in first.history)
    per_epoch = spent / len(first.history)
    left = (DEADLINE_FRACTION - RESERVE) * plan.time_budget_s - spent
    k = int(min(plan.epochs, left // per_epoch)) if per_epoch > 0 else 0
    need = max(5, int(first.best.get("epoch") or 0))
    return k if k >= need else 0


def spend_leftover(
    plan: Plan,
    data: TrainData,
    run: RunDir,
    first: FitResult,
    *,
    resuming: bool = False,
    hooks: list[Hook] | None = None,
) -> torch.nn.Module:
    """The first network, or the ensemble with a second seed when validation says it
    helps; records the decision in ``plan.notes`` (the caller saves the plan)."""
    epochs = second_member_epochs(plan, first)
    if not epochs:
        return first.model
    if world_size() > 1:  # a second fit in the same process group hung (seen on real data)
        plan.notes.append(
            f"budget left after early stopping ({epochs} epochs) not spent: the second-seed "
            "member is not trained under DDP (train in one process to use it)"
        )
        return first.model
    p2 = copy.deepcopy(plan)
    p2.seed = plan.seed + 1
    p2.epochs = epochs
    p2.min_epochs = max(1, min(plan.min_epochs, epochs // 2))
    p2.time_budget_s = max(1.0, epochs * _epoch_seconds(first)) / DEADLINE_FRACTION
    member_run = RunDir(run.path / "members" / f"seed{p2.seed}")
    member_run.path.mkdir(parents=True, exist_ok=True)
    log.info(
        "budget left after early stopping: a second network (seed %d), %d epochs", p2.seed, epochs
    )
    second = fit(ClassificationTraining(p2, data), member_run, resume=resuming, hooks=hooks)
    ensemble = SeedEnsemble([first.model, second.model]).eval()
    y = data.y_val.numpy()
    auc_first, auc_second, auc_both = (
        _val_auc(plan, m, data.x_val, y) for m in (first.model, second.model, ensemble)
    )
    what = (
        f"budget left after early stopping at epoch {len(first.history)}: trained a second "
        f"network (seed {p2.seed}) for {len(second.history)} epochs; validation AUC first "
        f"{auc_first:.4f}, second {auc_second:.4f}, their mean {auc_both:.4f}"
    )
    if np.isfinite(auc_both) and auc_both >= auc_first + MIN_GAIN:
        plan.model_kwargs = {**plan.model_kwargs, "members": 2}
        plan.notes.append(f"{what}: ensemble kept")
        return ensemble
    plan.notes.append(f"{what}: ensemble not kept (gain below {MIN_GAIN})")
    return first.model


def _epoch_seconds(result: FitResult) -> float:
    return sum(float(r.get("seconds", 0.0)) for r in result.history) / max(1, len(result.history))


def _val_auc(plan: Plan, model: torch.nn.Module, x: torch.Tensor, y: np.ndarray) -> float:
    probs = probabilities(plan.task, predict_logits(model, x, "cpu")).numpy()
    auc = macro_auc(plan.task, y, probs)
    return float(auc) if auc is not None and not math.isnan(auc) else float("nan")
