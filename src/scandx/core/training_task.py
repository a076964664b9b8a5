"""What a task gives the training engine (``TrainingTask``) and what ``fit`` returns
(``FitResult``); ``core/engine.py`` re-exports both."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from scandx.core.health import Health, recovery_note
from scandx.core.schedule import Schedule

DEADLINE_FRACTION = 0.95  # tasks stop training before this share of their time budget
Hook = Callable[[int, dict[str, Any]], None]  # (epoch counted from 1, its record)

# A validation score within this many of its standard errors of the best is a tie (the
# ``tolerance`` a task may return; the later epoch wins). Classification: the AUC's
# (Hanley & McNeil); on PneumoniaMNIST it saturates at 0.996-0.998 by epoch 10 and its
# maximum picked an early, un-annealed epoch (test AUC 0.974). Segmentation: the mean
# Dice's over the validation cases; on DRIVE seed 1 its maximum (4 cases) picked epoch
# 14 of 35 (test F1 0.816; the last epoch's: 0.823).
TIE_STANDARD_ERRORS = 0.5


class TrainingTask(ABC):
    """What a task gives the engine (see the module docstring)."""

    schedule: Schedule
    seed: int
    device: str
    precision: str
    health: Health = Health()  # chance level of the score, recovery limits
    final_epoch: int | None = None  # set by the engine when the budget ends training early
    rank: int = 0  # DDP: this process's rank and the number of ranks (set by the engine)
    world: int = 1

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
        when this epoch is not validated. An optional ``tolerance``: scores within it of
        the best so far are ties, kept as the best (the later, longer-trained epoch), so
        a saturated metric's noise does not pick an early, un-annealed checkpoint."""

    def seconds_after_training(self, validation_s: float) -> float:
        """Seconds the task will need once ``fit`` returns (a threshold chosen on the
        validation cases, say), given one validation pass's measured seconds (0 before
        the first): the engine's deadline keeps them free. None by default."""
        return 0.0


@dataclass
class FitResult:
    model: torch.nn.Module  # best weights, on the CPU
    best: dict[str, Any]  # the best epoch's log record (epoch from 1)
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    device: str = "cpu"
    precision: str = "fp32"
    stopped: str = "completed"  # completed | early stop | time budget | unstable
    recoveries: list[dict[str, Any]] = field(default_factory=list)  # see core/health.py

    def notes(self) -> list[str]:
        """What the plan's notes should say about how training went."""
        out = [recovery_note(e["epoch"], e) for e in self.recoveries]
        if self.stopped in ("time budget", "unstable"):
            out.append(f"training stopped ({self.stopped}) after {len(self.history)} epochs")
        return out
