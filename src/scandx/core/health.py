"""Training health: what the engine watches so that a run never ends in a silently
broken model, and what it does about it.

Signs of trouble, checked by ``core/engine.py``:
- a non-finite loss or gradient norm during an epoch (divergence): the epoch is
  abandoned, the weights and optimiser go back to the end of the last good epoch
  (``last.ckpt``; a fresh seeded network before the first), the learning rate is
  halved and the epoch is replayed (same batches: they depend on (seed, epoch) only);
- collapse on validation: constant predictions (the task's ``validate`` says
  ``constant``), a non-finite score, or a score at chance (``Health.chance``, e.g.
  AUC 0.5) in ``chance_epochs`` validations in a row after it had risen ``margin``
  above it (one such validation is noise on a small validation set): the best
  weights are restored, the optimiser's moments reset and the learning rate halved.

Each recovery is written into that epoch's ``log.jsonl`` record (``recovery``) and
returned to the task, which adds it to the plan's notes. After ``max_recoveries`` the
run stops with its best weights, or, when it never had a good epoch, fails with
``TrainingDiverged`` (a clear error and a non-zero exit, no model written).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from scandx.errors import ScandxError


class TrainingDiverged(ScandxError):
    """Training produced no usable weights even after recovering."""


@dataclass
class Health:
    chance: float | None = None  # the validation score of a useless model; None: unknown
    margin: float = 0.1  # a score must rise this far above chance before a fall counts
    chance_epochs: int = 2  # validations in a row at chance (one is noise on small sets)
    max_recoveries: int = 3
    lr_drop: float = 0.5


def non_finite(value: float) -> bool:
    return not math.isfinite(value)


def at_chance(val: dict[str, Any], best_score: float, health: Health) -> bool:
    """This validation scored at chance after an earlier one had clearly beaten it."""
    c = health.chance
    return c is not None and best_score >= c + health.margin and val["score"] <= c + 0.01


def collapse_reason(
    val: dict[str, Any], best_score: float, health: Health, streak: int = 0
) -> str | None:
    """Why this validation looks collapsed, or None when it does not; ``streak`` is the
    number of validated epochs just before this one that were at chance."""
    score = float(val["score"])
    if non_finite(score):
        return f"non-finite validation score ({score})"
    if val.get("constant"):
        return "constant predictions on the validation set"
    if at_chance(val, best_score, health) and streak + 1 >= health.chance_epochs:
        return (
            f"validation score {score:.4f} at chance ({health.chance}) for {streak + 1} "
            f"validations after reaching {best_score:.4f}"
        )
    return None


def recovery_note(epoch: int, event: dict[str, Any]) -> str:
    return f"training, epoch {epoch}: {event['reason']} -> {event['action']}"


def finite_weights(model: torch.nn.Module) -> bool:
    """True when every floating parameter of ``model`` is finite."""
    return all(
        bool(torch.isfinite(p.detach()).all()) for p in model.parameters() if p.is_floating_point()
    )


def refuse_non_finite(model: torch.nn.Module) -> None:
    """Raise TrainingDiverged when ``model`` has a non-finite weight (before writing it)."""
    if not finite_weights(model):
        raise TrainingDiverged(
            "the trained model has non-finite (NaN/Inf) weights and is not written; check "
            "the images for NaN/Inf values and the plan's lr"
        )
