"""Training health: what the engine watches so that a run never ends in a silently
broken model, and what it does about it.

Signs of trouble, checked by ``core/engine.py``:
- a non-finite loss or gradient norm during an epoch (divergence): the epoch is
  abandoned, the weights and optimiser go back to the end of the last good epoch
  (``last.ckpt``; a fresh seeded network before the first), the learning rate is
  halved and the epoch is replayed (same batches: they depend on (seed, epoch) only);
- collapse on validation: constant predictions (the task's ``validate`` says
  ``constant``), a non-finite score, or a score back at chance (the task's
  ``chance_score``, e.g. AUC 0.5) after it had risen ``margin`` above it: the best
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

from scandx.errors import ScandxError


class TrainingDiverged(ScandxError):
    """Training produced no usable weights even after recovering."""


@dataclass
class Health:
    chance: float | None = None  # the validation score of a useless model; None: unknown
    margin: float = 0.05  # a score must rise this far above chance before a fall counts
    max_recoveries: int = 3
    lr_drop: float = 0.5


def non_finite(value: float) -> bool:
    return not math.isfinite(value)


def collapse_reason(val: dict[str, Any], best_score: float, health: Health) -> str | None:
    """Why this validation looks collapsed, or None when it does not."""
    score = float(val["score"])
    if non_finite(score):
        return f"non-finite validation score ({score})"
    if val.get("constant"):
        return "constant predictions on the validation set"
    c = health.chance
    if c is not None and best_score >= c + health.margin and score <= c + health.margin / 5:
        return f"validation score {score:.4f} back at chance ({c}) after reaching {best_score:.4f}"
    return None


def recovery_note(epoch: int, event: dict[str, Any]) -> str:
    return f"training, epoch {epoch}: {event['reason']} -> {event['action']}"
