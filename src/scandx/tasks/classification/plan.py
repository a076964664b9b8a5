"""The Plan: one typed object that drives a run, saved as ``RUN/plan.json``.

Every hyperparameter lives here, so editing plan.json and running
``scandx train --plan plan.json`` is the way to change a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from scandx.core.plan import PlanBase
from scandx.core.plan_check import Bounds
from scandx.errors import ScandxError

LOSSES = ("ce", "weighted_ce", "focal", "bce", "weighted_bce")
SAMPLERS = ("shuffle", "balanced")
SEMI_SUPERVISED = ("off", "pseudo-label")  # training/semi_supervised.py


@dataclass
class Augmentation:
    rotate_deg: float = 10.0
    scale: tuple[float, float] = (0.9, 1.1)
    translate: float = 0.06
    hflip: bool = False
    brightness: float = 0.1
    contrast: float = 0.1


@dataclass(kw_only=True)
class Plan(PlanBase):
    """Classification plan; ``task`` is binary, multiclass or multilabel."""

    classes: list[str]
    spatial_dims: int = 2
    in_channels: int = 1
    input_size: list[int] = field(default_factory=lambda: [64, 64])
    intensity_mean: list[float] = field(default_factory=lambda: [0.5])
    intensity_std: list[float] = field(default_factory=lambda: [0.25])
    model: str = "resnet18"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    loss: str = "ce"
    class_weights: list[float] | None = None
    focal_gamma: float = 2.0
    sampler: str = "shuffle"
    augmentation: Augmentation = field(default_factory=Augmentation)
    batch_size: int = 64
    epochs: int = 20
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 1
    early_stopping_patience: int = 10
    min_epochs: int = 1  # early stopping never ends a run before this many epochs
    channels_last: bool = False
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    threshold_rule: str = "youden"
    # binary: the class sensitivity/PPV/ROC/threshold are about, always classes[1] once
    # training starts (positive.py); None in a plan.json written before: classes[1]
    positive_class: str | None = None
    # scarce labels (issue 15; labelled_fraction is PlanBase's): what is done with the
    # unlabelled training images
    semi_supervised: str = "off"
    # pseudo-labels: per class, the lowest confidence at which the first network's
    # validation predictions of that class are at least this precise
    pseudo_label_precision: float = 0.95
    fingerprint: dict[str, Any] = field(default_factory=dict)

    BOUNDS: ClassVar[dict[str, Bounds]] = {
        **PlanBase.BOUNDS,
        "spatial_dims": Bounds(2, 3),
        "in_channels": Bounds(1, 4),
        "input_size": Bounds(1, 4096),
        "intensity_std": Bounds(0, low_open=True),
        "class_weights": Bounds(0, low_open=True),
        "focal_gamma": Bounds(0, 10),
        "batch_size": Bounds(1),
        "epochs": Bounds(1, 100_000),
        "lr": Bounds(0, 10, low_open=True),
        "weight_decay": Bounds(0, 10),
        "warmup_epochs": Bounds(0),
        "early_stopping_patience": Bounds(0),
        "min_epochs": Bounds(0),
        "val_fraction": Bounds(0, 0.9),
        "test_fraction": Bounds(0, 0.9),
        "pseudo_label_precision": Bounds(0.5, 1),
    }
    CHOICES: ClassVar[dict[str, tuple[Any, ...]]] = {
        **PlanBase.CHOICES,
        "task": ("binary", "multiclass", "multilabel"),
        "loss": LOSSES,
        "sampler": SAMPLERS,
        "threshold_rule": ("youden",),
        "semi_supervised": SEMI_SUPERVISED,
    }
    MODEL_KIND: ClassVar[str | None] = "classifier"

    def validate(self) -> Plan:
        checks = [
            (self.task in ("binary", "multiclass", "multilabel"), f"task {self.task!r}"),
            (self.loss in LOSSES, f"loss {self.loss!r} (choose from {LOSSES})"),
            (self.sampler in SAMPLERS, f"sampler {self.sampler!r} (choose from {SAMPLERS})"),
            (len(self.input_size) == self.spatial_dims, "input_size length != spatial_dims"),
            (len(self.intensity_mean) == self.in_channels, "intensity_mean length != in_channels"),
            (len(self.classes) >= 2, "at least two classes"),
            (
                self.positive_class is None or self.task == "binary",
                f"positive_class is for binary tasks, not {self.task}",
            ),
            (
                self.positive_class is None or self.positive_class in self.classes,
                f"positive_class {self.positive_class!r} is not one of the classes {self.classes}",
            ),
        ]
        for ok, what in checks:
            if not ok:
                raise ScandxError(f"invalid plan: {what}")
        return super().validate()

    @classmethod
    def coerce(cls, d: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(d.get("augmentation"), Augmentation):
            d["augmentation"] = Augmentation(**(d.get("augmentation") or {}))
        return d
