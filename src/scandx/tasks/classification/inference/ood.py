"""Out-of-distribution score and test-time-augmentation uncertainty.

OOD: Mahalanobis distance of the penultimate features (the input of the model's
last linear layer) to the nearest class mean under a shared Ledoit-Wolf covariance
(Lee et al., NeurIPS 2018). Means and covariance come from training images; the
threshold is the 95th percentile of validation scores, so about 5% of
in-distribution images are flagged. Stored in ``model/ood.safetensors`` and
``model.json`` ``ood``.

Uncertainty: the standard deviation of the explained probability over seeded
test-time augmentations (small affine and intensity changes).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from scandx.tasks.classification.plan import Augmentation
from scandx.tasks.classification.training.augment import augment_batch

OOD_QUANTILE = 0.95
MAX_FIT_IMAGES = 2000


def _last_linear(model: nn.Module) -> nn.Linear:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("model has no linear layer to take penultimate features from")
    return linears[-1]


@contextmanager
def capturing_penultimate(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect the inputs of the model's last linear layer for every forward pass inside."""
    captured: list[torch.Tensor] = []
    hook = _last_linear(model).register_forward_hook(
        lambda _m, inp, _out: captured.append(inp[0].detach().float().flatten(1).cpu())
    )
    try:
        yield captured
    finally:
        hook.remove()


def as_features(captured: list[torch.Tensor]) -> np.ndarray:
    return torch.cat(captured).double().numpy()


@torch.no_grad()
def penultimate_features(model: nn.Module, x: torch.Tensor, batch: int = 256) -> np.ndarray:
    """Inputs of the model's last linear layer, (N, D) float64."""
    model.eval()
    with capturing_penultimate(model) as captured:
        for i in range(0, len(x), batch):
            model(x[i : i + batch])
    return as_features(captured)


def fit_ood(
    model: nn.Module, x_train: torch.Tensor, y_train: np.ndarray, x_val: torch.Tensor, seed: int = 0
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors for ood.safetensors, the model.json ``ood`` entry)."""
    from sklearn.covariance import LedoitWolf

    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(x_train))[:MAX_FIT_IMAGES]
    feats = penultimate_features(model, x_train[pick])
    labels = (
        y_train[pick] if y_train.ndim == 1 else np.zeros(len(pick), int)
    )  # multi-label: one mean
    classes = sorted(set(labels.tolist()))
    means = np.stack([feats[labels == c].mean(0) for c in classes])
    centred = feats - means[np.searchsorted(classes, labels)]
    precision = LedoitWolf().fit(centred).precision_
    tensors = {"means": torch.from_numpy(means), "precision": torch.from_numpy(precision)}
    val_scores = mahalanobis(penultimate_features(model, x_val), tensors)
    info = {
        "method": "mahalanobis on penultimate features, shared Ledoit-Wolf covariance",
        "fitted_on": "train (means, covariance), val (threshold)",
        "threshold": float(np.quantile(val_scores, OOD_QUANTILE)),
        "val_flag_rate": 1 - OOD_QUANTILE,
        "file": "ood.safetensors",
    }
    return tensors, info


def mahalanobis(features: np.ndarray, tensors: dict[str, torch.Tensor]) -> np.ndarray:
    """Distance to the nearest class mean, (N,)."""
    means = tensors["means"].numpy()
    precision = tensors["precision"].numpy()
    d = features[:, None, :] - means[None]  # (N, K, D)
    return np.sqrt(np.maximum(np.einsum("nkd,de,nke->nk", d, precision, d), 0)).min(1)


def tta_probabilities(
    probs_fn: Any,
    x: torch.Tensor,
    mean: list[float],
    std: list[float],
    n: int = 8,
    seed: int = 0,
    first: np.ndarray | None = None,
) -> np.ndarray:
    """(n, N, K) probabilities of ``n`` seeded augmentations of a batch (the first is x itself;
    pass its probabilities as ``first`` when they are already known).

    Each image draws its augmentations from its own generator seeded with ``seed``, so an
    image's spread depends only on the image and the seed, never on the other files of
    the same ``predict`` call or its place among them (one generator shared by the batch
    gave image i the i-th draw)."""
    aug = Augmentation(
        rotate_deg=5, scale=(0.95, 1.05), translate=0.03, brightness=0.05, contrast=0.05
    )
    m, s = torch.tensor(mean), torch.tensor(std)
    first = probs_fn(x) if first is None else first
    out = np.empty((n, *first.shape), dtype=first.dtype)
    out[0] = first
    for i in range(len(x)):
        g = torch.Generator().manual_seed(seed)
        views = torch.cat([augment_batch(x[i : i + 1], aug, m, s, g) for _ in range(n - 1)])
        if n > 1:  # the image's own views scored together, without other images
            out[1:, i] = probs_fn(views)
    return out
