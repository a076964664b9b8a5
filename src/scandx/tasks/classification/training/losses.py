"""Loss registry: the plan names the loss; nothing is chosen by subclassing."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from scandx.errors import ScandxError
from scandx.tasks.classification.plan import Plan

LossBuilder = Callable[[Plan], nn.Module]
_LOSSES: dict[str, LossBuilder] = {}


def register_loss(name: str) -> Callable[[LossBuilder], LossBuilder]:
    def wrap(fn: LossBuilder) -> LossBuilder:
        _LOSSES[name] = fn
        return fn

    return wrap


def create_loss(plan: Plan) -> nn.Module:
    if plan.loss not in _LOSSES:
        raise ScandxError(f"unknown loss {plan.loss!r}; available: {', '.join(sorted(_LOSSES))}")
    return _LOSSES[plan.loss](plan)


def _weights(plan: Plan) -> torch.Tensor | None:
    return torch.tensor(plan.class_weights, dtype=torch.float32) if plan.class_weights else None


class FocalLoss(nn.Module):
    """Softmax focal loss (Lin et al. 2017) with optional per-class weights (alpha)."""

    def __init__(self, gamma: float = 2.0, weight: torch.Tensor | None = None):
        super().__init__()
        self.gamma = gamma
        self.register_buffer("weight", weight if weight is not None else None)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(logits.float(), dim=1)
        logp_t = logp.gather(1, target[:, None]).squeeze(1)
        loss = -((1 - logp_t.exp()) ** self.gamma) * logp_t
        if self.weight is not None:
            w = self.weight[target]
            return (loss * w).sum() / w.sum()
        return loss.mean()


@register_loss("ce")
def _ce(plan: Plan) -> nn.Module:
    return nn.CrossEntropyLoss()


@register_loss("weighted_ce")
def _wce(plan: Plan) -> nn.Module:
    return nn.CrossEntropyLoss(weight=_weights(plan))


@register_loss("focal")
def _focal(plan: Plan) -> nn.Module:
    return FocalLoss(plan.focal_gamma, _weights(plan))


@register_loss("bce")
def _bce(plan: Plan) -> nn.Module:
    return nn.BCEWithLogitsLoss()


@register_loss("weighted_bce")
def _wbce(plan: Plan) -> nn.Module:
    return nn.BCEWithLogitsLoss(pos_weight=_weights(plan))


def list_losses() -> list[str]:
    return sorted(_LOSSES)
