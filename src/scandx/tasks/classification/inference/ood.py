"""Out-of-distribution score and test-time-augmentation uncertainty.

OOD: two distances, each divided by its own threshold, and the larger is the score
(flagged above 1):

- features: Mahalanobis distance of the penultimate features (the input of the
  model's last linear layer) to the nearest class mean under a shared Ledoit-Wolf
  covariance (Lee et al., NeurIPS 2018), fitted on training images;
- pixels: Mahalanobis distance of simple input statistics (``input_stats``: intensity
  histogram, mean, spread, edge energy) to the training images'. A network's features
  alone missed a CT, an MR, a white image and noise on the demo model.

Each threshold is set on the validation images (never seen in fitting) at a
false-flag rate of ``FALSE_FLAG_RATE / 2``: the larger of the empirical quantile and
the quantile of a log-normal fitted to the validation distances (on a small
validation split the empirical quantile is just its largest value, which new
in-distribution images exceed far more often than the nominal rate). So at most about
``FALSE_FLAG_RATE`` (1%) of in-distribution images are flagged; the 95th percentile
used before flagged 5% by construction, and most of a shifted but still usable
population (42 of 54 adult chest X-rays on a PneumoniaMNIST model). Stored in
``model/ood.safetensors`` (checksummed) and ``model.json`` ``ood``.

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

from scandx.tasks.classification.inference.input_stats import bin_edges, input_statistics
from scandx.tasks.classification.plan import Augmentation
from scandx.tasks.classification.training.augment import augment_batch

FALSE_FLAG_RATE = 0.01  # of in-distribution images, both distances together
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


def _precision(centred: np.ndarray) -> np.ndarray:
    from sklearn.covariance import LedoitWolf

    return LedoitWolf().fit(centred).precision_


def flag_threshold(val_scores: np.ndarray, rate: float) -> float:
    """The distance above which about ``rate`` of in-distribution images lie: the larger
    of the validation scores' empirical (1 - rate) quantile and that of a log-normal
    fitted to them (stable where the validation split is small)."""
    from statistics import NormalDist

    v = np.asarray(val_scores, dtype=float)
    logs = np.log(np.maximum(v, 1e-12))
    z = NormalDist().inv_cdf(1 - rate)
    parametric = float(np.exp(logs.mean() + z * logs.std(ddof=1))) if len(v) > 2 else v.max()
    return max(float(np.quantile(v, 1 - rate)), parametric)


def fit_ood(
    model: nn.Module, x_train: torch.Tensor, y_train: np.ndarray, x_val: torch.Tensor, seed: int = 0
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors for ood.safetensors, the model.json ``ood`` entry)."""
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(x_train))[:MAX_FIT_IMAGES]
    feats = penultimate_features(model, x_train[pick])
    labels = (
        y_train[pick] if y_train.ndim == 1 else np.zeros(len(pick), int)
    )  # multi-label: one mean
    classes = sorted(set(labels.tolist()))
    means = np.stack([feats[labels == c].mean(0) for c in classes])
    centred = feats - means[np.searchsorted(classes, labels)]
    edges = bin_edges(x_train[pick], seed=seed)
    stats = input_statistics(x_train[pick], edges)
    tensors = {
        "means": torch.from_numpy(means),
        "precision": torch.from_numpy(_precision(centred)),
        "input_edges": torch.from_numpy(edges),
        "input_mean": torch.from_numpy(stats.mean(0, keepdims=True)),
        "input_precision": torch.from_numpy(_precision(stats - stats.mean(0))),
    }
    val_feats = penultimate_features(model, x_val)
    val_feature = mahalanobis(val_feats, tensors)
    val_input = input_distance(input_statistics(x_val, edges), tensors)
    tensors["thresholds"] = torch.tensor(
        [
            flag_threshold(val_feature, FALSE_FLAG_RATE / 2),
            flag_threshold(val_input, FALSE_FLAG_RATE / 2),
        ],
        dtype=torch.float64,
    )
    val_scores = combined_scores(val_feature, val_input, tensors)
    info = {
        "method": "max of Mahalanobis distances (penultimate features; input intensity "
        "histogram, mean, spread, edge energy), each over its validation threshold",
        "fitted_on": "train (means, covariances), val (thresholds)",
        "threshold": 1.0,
        "target_false_flag_rate": FALSE_FLAG_RATE,
        "val_flag_rate": float(np.mean(val_scores > 1.0)),
        "val_images": len(x_val),
        "feature_threshold": float(tensors["thresholds"][0]),
        "input_threshold": float(tensors["thresholds"][1]),
    }
    return tensors, info


def input_distance(stats: np.ndarray, tensors: dict[str, torch.Tensor]) -> np.ndarray:
    """Mahalanobis distance of input statistics to the training images' mean, (N,)."""
    return mahalanobis(
        stats, {"means": tensors["input_mean"], "precision": tensors["input_precision"]}
    )


def combined_scores(
    feature: np.ndarray, inputs: np.ndarray, tensors: dict[str, torch.Tensor]
) -> np.ndarray:
    """max(feature distance / its threshold, input distance / its threshold): > 1 flags."""
    t = tensors["thresholds"].numpy()
    return np.maximum(feature / t[0], inputs / t[1])


def ood_features(
    features: np.ndarray, x: torch.Tensor, tensors: dict[str, torch.Tensor] | None
) -> np.ndarray:
    """The penultimate features with the input statistics appended (what ``ood_score``
    takes); the features alone for a model fitted before input statistics."""
    if tensors is None or "input_edges" not in tensors:
        return features
    return np.hstack([features, input_statistics(x, tensors["input_edges"].numpy())])


def ood_score(features: np.ndarray, tensors: dict[str, torch.Tensor]) -> np.ndarray:
    """The OOD score of ``ood_features`` rows: > 1 flags (in model.json ``ood.threshold``).
    A model fitted before input statistics: the feature distance (its own threshold)."""
    if "input_edges" not in tensors:
        return mahalanobis(features, tensors)
    d = tensors["means"].shape[1]
    return combined_scores(
        mahalanobis(features[:, :d], tensors), input_distance(features[:, d:], tensors), tensors
    )


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
