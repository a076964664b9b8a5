"""Logits and probabilities of a classifier, batch by batch (used by training's
validation and by the Predictor; imports nothing from training)."""

from __future__ import annotations

import torch


def probabilities(task: str, logits: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(logits) if task == "multilabel" else torch.softmax(logits, dim=1)


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module,
    x: torch.Tensor,
    device: str,
    autocast_dtype: torch.dtype | None = None,
    batch: int = 256,
) -> torch.Tensor:
    """Logits batch by batch, in fp32 unless ``autocast_dtype`` is given.

    Evaluation and prediction always use fp32 (a probability must not depend on
    its batch); only per-epoch validation during training runs under autocast.
    """
    model.eval()
    out = []
    kind = "cuda" if str(device).startswith("cuda") else "cpu"
    enabled = autocast_dtype is not None
    with torch.autocast(kind, dtype=autocast_dtype or torch.float32, enabled=enabled):
        for i in range(0, len(x), batch):
            out.append(model(x[i : i + batch].to(device)).float().cpu())
    return torch.cat(out) if out else torch.empty(0)
