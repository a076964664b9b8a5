"""Logits and probabilities of a classifier, batch by batch (used by training's
validation and by the Predictor; imports nothing from training)."""

from __future__ import annotations

import torch

from scandx.core.device import autocast


def probabilities(task: str, logits: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(logits) if task == "multilabel" else torch.softmax(logits, dim=1)


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module,
    x: torch.Tensor,
    device: str,
    precision: str = "fp32",
    batch: int = 256,
) -> torch.Tensor:
    """Logits batch by batch, in fp32 unless another ``precision`` is given.

    Evaluation and prediction always use fp32 (a probability must not depend on
    its batch); only per-epoch validation during training runs under autocast.
    """
    model.eval()
    out = []
    with autocast(str(device), precision):
        for i in range(0, len(x), batch):
            out.append(model(x[i : i + batch].to(device)).float().cpu())
    return torch.cat(out) if out else torch.empty(0)
