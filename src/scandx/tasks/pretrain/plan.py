"""The pretraining plan (``plan.json`` with ``task`` "pretrain").

The network pretrained is the downstream task's own: the classifier the classification
planner would choose for the data (its backbone; the output layer is left out of the
encoder) or the segmentation planner's U-Net. ``downstream_plan`` is that task's plan as
planned for these images (labels aside), so ``train --init`` can check that the network
it builds is the one pretrained; ``network`` is the short form (core/pretrained.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from scandx.core.plan import PlanBase
from scandx.core.plan_check import Bounds
from scandx.errors import ScandxError

METHODS = ("simclr", "mae", "autoencoder")
FAMILIES = ("classifier", "segmenter")


@dataclass(kw_only=True)
class PretrainPlan(PlanBase):
    task: str = "pretrain"
    method: str = "simclr"
    family: str = "classifier"
    # model, model_kwargs, spatial_dims, in_channels, input_size | patch_size
    network: dict[str, Any] = field(default_factory=dict)
    downstream_plan: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 64
    epochs: int = 50
    steps_per_epoch: int | None = None  # None: one pass over the training images
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 1
    early_stopping_patience: int = 10
    min_epochs: int = 1
    temperature: float = 0.2  # simclr: NT-Xent temperature
    projection_dim: int = 128  # simclr: projection head output
    mask_ratio: float = 0.6  # mae: fraction of patches hidden
    mask_patch: int = 4  # mae: patch edge in pixels (voxels)
    code_dim: int = 128  # autoencoder: the bottleneck's size
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    fingerprint: dict[str, Any] = field(default_factory=dict)

    BOUNDS: ClassVar[dict[str, Bounds]] = {
        **PlanBase.BOUNDS,
        "batch_size": Bounds(2),
        "epochs": Bounds(1, 100_000),
        "steps_per_epoch": Bounds(1),
        "lr": Bounds(0, 10, low_open=True),
        "weight_decay": Bounds(0, 10),
        "warmup_epochs": Bounds(0),
        "early_stopping_patience": Bounds(0),
        "min_epochs": Bounds(0),
        "temperature": Bounds(0, 10, low_open=True),
        "projection_dim": Bounds(1),
        "mask_ratio": Bounds(0, 1, low_open=True),
        "mask_patch": Bounds(1),
        "code_dim": Bounds(1),
        "val_fraction": Bounds(0, 0.9),
        "test_fraction": Bounds(0, 0.9),
    }
    CHOICES: ClassVar[dict[str, tuple[Any, ...]]] = {
        **PlanBase.CHOICES,
        "task": ("pretrain",),
        "method": METHODS,
        "family": FAMILIES,
    }

    def validate(self) -> PretrainPlan:
        for key in ("model", "spatial_dims", "in_channels"):
            if key not in self.network:
                raise ScandxError(f"invalid plan: network lacks {key!r}")
        if self.mask_ratio >= 1:
            raise ScandxError("invalid plan: mask_ratio must be below 1")
        return super().validate()
