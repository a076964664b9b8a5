"""What a task is: the interface every task (classification, segmentation, ...) gives the
shared core. The registry in ``scandx/tasks/__init__.py`` maps names to tasks.

A task supplies what differs: recognising its data, fingerprint -> plan, training
(through ``core/engine.py``), the k-fold pieces (``core/cross_validation.py``),
evaluation and its report sections, and its Predictor (``core/predictor.py``). The core
supplies what is the same: the run directory, the plan base, device and precision,
the training engine, the cross-validation driver, the predict loop and the report frame.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scandx.core.embedding import Embedder
from scandx.core.plan import PlanBase
from scandx.core.predictor import Predictor
from scandx.core.run_dir import RunDir
from scandx.errors import ScandxError

# option -> the command-line flag a user typed (for refusals)
FLAGS = {
    "model": "--model",
    "image_root": "--image-root",
    "dims": "--dims",
    "memory_budget_gb": "--memory-budget",
    "subgroups": "--subgroups",
    "gallery": "--gallery",
    "method": "--method",
    "class_name": "--class",
    "precision": "--precision",
    "positive_class": "--positive-class",
    "init": "--init",
    "labelled_fraction": "--labelled-fraction",
    "semi_supervised": "--semi-supervised",
}


@dataclass
class Options:
    """Everything a command can be told; None / False means "not given"."""

    time_budget_s: float | None = None
    seed: int | None = None
    model: str | None = None
    image_root: str | Path | None = None
    skip_bad: bool = False
    dims: int | None = None
    memory_budget_gb: float | None = None
    plan_path: str | Path | None = None
    resume: bool = False
    hooks: list[Any] = field(default_factory=list)
    n_boot: int = 1000
    subgroups: list[str] | None = None
    gallery: int | None = None
    method: str | None = None
    class_name: str | None = None
    precision: str | None = None  # fp32 | bf16 | fp16, forced; None: the machine's best
    positive_class: str | None = None  # binary classification only
    init: str | Path | None = None  # train --init RUN: a pretrained run's encoder
    labelled_fraction: float | None = None  # keep labels of this fraction of train patients
    semi_supervised: str | None = None  # "auto" (default: on with unlabelled cases) | "off"


class Task(ABC):
    name: str
    plan_type: type[PlanBase]
    plan_tasks: tuple[str, ...]  # values of plan.json "task" this task owns
    unsupported: dict[str, str] = {}  # option -> why this task refuses it

    def check_options(self, options: Options, command: str) -> None:
        """Refuse, with the reason, an option this task does not use (never ignore it)."""
        for name, why in self.unsupported.items():
            value = getattr(options, name)
            if value not in (None, False, []):
                flag = FLAGS.get(name, name)
                raise ScandxError(f"{flag} does not apply to {self.name} ({command}): {why}")

    @abstractmethod
    def recognises(self, data: str | Path) -> bool: ...

    @abstractmethod
    def plan(self, data: str | Path, run: RunDir | None, options: Options) -> PlanBase:
        """Fingerprint ``data`` and plan; writes plan.json (and skipped.csv) in ``run``."""

    @abstractmethod
    def describe_plan(self, plan: Any) -> str: ...

    @abstractmethod
    def train(self, data: str | Path, run: RunDir, options: Options) -> dict[str, Any]:
        """Plan (or load ``options.plan_path``), train, choose decision rules on
        validation, write the model; returns train_summary.json's content."""

    @abstractmethod
    def evaluate(
        self, run: RunDir, data: str | Path, split: str, options: Options
    ) -> dict[str, Any]: ...

    @abstractmethod
    def format_metrics(self, metrics: dict[str, Any]) -> str: ...

    @abstractmethod
    def load_predictor(
        self, run: RunDir, device: str | None = None, runtime: str = "torch"
    ) -> Predictor:
        """The run's Predictor; ``runtime="onnx"`` runs its network(s) from the run's
        checked ONNX export (``scandx export``) with everything around them unchanged."""

    def explain(
        self, run: RunDir, files: list[str], out: Path, options: Options
    ) -> list[dict[str, Any]]:
        raise ScandxError(f"explain is not available for {self.name}")

    def load_embedder(self, run: RunDir) -> Embedder:
        """One vector per image from this run's network (``scandx embed``)."""
        raise ScandxError(f"embeddings are not available for {self.name} runs", run.path)

    def demo(self, out: Path, options: Options) -> str:
        raise ScandxError(f"no demo for {self.name}")

    # k-fold cross-validation (core/cross_validation.py drives these)
    @abstractmethod
    def cv_prepare(self, data: str | Path, k: int, options: Options, resume_plan: Path | None):
        """Load the data, plan once (the time budget shared by the folds) and deal the
        non-test patients into k folds; returns a task-specific setup with ``plan``,
        ``manifest`` (written to RUN) and ``folds`` ({patient: fold})."""

    @abstractmethod
    def cv_write_run_files(self, setup: Any, run: RunDir) -> None: ...

    @abstractmethod
    def cv_train_fold(
        self, setup: Any, i: int, fold_run: RunDir, resuming: bool, options: Options
    ) -> None: ...

    @abstractmethod
    def cv_fold_outcome(self, setup: Any, i: int, fold_run: RunDir) -> tuple[dict, Any]:
        """(this fold's validation metrics, its out-of-fold predictions)."""

    @abstractmethod
    def cv_ensemble(
        self, setup: Any, oof: list[Any], run: RunDir
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the ensemble's task fields for model.json, chosen on the pooled out-of-fold
        predictions; the out-of-fold metrics)."""

    @abstractmethod
    def write_model_card(self, run: RunDir) -> Path: ...
