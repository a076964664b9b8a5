"""Out-of-distribution score and test-time-augmentation uncertainty.

OOD: two distances, each divided by its own threshold, and the larger is the score
(flagged above 1):

- features: Mahalanobis distance of the penultimate features (the input of the
  model's last linear layer) to the nearest class mean under a shared Ledoit-Wolf
  covariance (Lee et al., NeurIPS 2018), fitted on training images;
- pixels: Mahalanobis distance of simple input statistics (``input_stats``: intensity
  histogram, mean, spread, edge energy) to the training images'. A network's features
  alone missed a CT, an MR, a white image and noise on the demo model.

Each threshold is an upper tolerance bound at a false-flag rate of
``FALSE_FLAG_RATE / 2`` (``flag_threshold``): with probability ``CONFIDENCE`` over the
draw of the images it is set on, at most that fraction of in-distribution images lie
above it. It is set on distances the Gaussian fit never saw:

- features: the larger of the bounds on the validation images' distances (unbiased,
  but a run's validation split can be a dozen images) and on the training images'
  distances cross-fitted by patient (many, and as low only as far as the network's
  features of its own training images are tighter than a new image's). A log-normal's
  99.5% quantile fitted to the validation distances alone, as before, flagged 0.7% to
  8.9% of new phantom images across eight 5-second runs on one data set; this rule
  0% to 0.7% (1.7% at most in eight more runs);
- input statistics: these need no network, so they are fitted on the training and
  validation images together, and the threshold is set on the cross-fitted distances
  of all of them.

So about ``FALSE_FLAG_RATE`` (1%) of in-distribution images are flagged, rarely more;
the 95th percentile used before flagged 5% by construction, and most of a shifted but
still usable population (42 of 54 adult chest X-rays on a PneumoniaMNIST model).
Stored in ``model/ood.safetensors`` (checksummed) and ``model.json`` ``ood``.

Uncertainty: the standard deviation of the explained probability over seeded
test-time augmentations (small affine and intensity changes).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from scandx.tasks.classification.inference.input_stats import bin_edges, input_statistics
from scandx.tasks.classification.plan import Augmentation
from scandx.tasks.classification.training.augment import augment_batch

FALSE_FLAG_RATE = 0.01  # of in-distribution images, both distances together
CONFIDENCE = 0.9  # that each distance's false-flag rate is within its share
CROSS_FIT_PARTS = 5
MAX_FIT_IMAGES = 2000


def _last_linear(model: nn.Module) -> nn.Module:
    """The module whose input is the penultimate features: the last linear layer, or the
    ``penultimate_tap`` of a network run elsewhere (``export.onnx_runtime.OnnxNetwork``
    passes its graph's ``features`` output through it)."""
    tap = getattr(model, "penultimate_tap", None)
    if isinstance(tap, nn.Module):
        return tap
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


def flag_threshold(scores: np.ndarray, rate: float, confidence: float = CONFIDENCE) -> float:
    """The distance that at most ``rate`` of in-distribution images exceed, with
    probability ``confidence`` over the draw of the ``scores`` (in-distribution distances
    the fit never saw): an upper tolerance bound.

    Parametric: the log distances taken as normal, mean + k * sd with the one-sided
    tolerance factor k = t'(confidence; n - 1, z_(1-rate) sqrt n) / sqrt n (noncentral t),
    which grows as n shrinks (n = 12: k = 3.7 against the plain quantile's z = 2.58).
    Where there are enough scores for a distribution-free bound (an order statistic,
    n >= 460 at rate 0.5%), the threshold is never below it, in case the tail is heavier
    than a log-normal's.
    """
    from scipy.stats import binom, nct, norm

    v = np.sort(np.asarray(scores, dtype=float))
    n = len(v)
    if n < 3:
        return float(v.max()) * 2 if n else float("inf")
    logs = np.log(np.maximum(v, 1e-12))
    k = nct.ppf(confidence, n - 1, norm.ppf(1 - rate) * np.sqrt(n)) / np.sqrt(n)
    bound = float(np.exp(logs.mean() + k * logs.std(ddof=1)))
    # the r-th smallest score bounds the (1 - rate) quantile when P(Bin(n, 1 - rate) < r)
    # >= confidence
    r = int(binom.ppf(confidence, n, 1 - rate)) + 1
    return max(bound, float(v[r - 1])) if r <= n else bound


def _gaussian(rows: np.ndarray, labels: np.ndarray) -> dict[str, torch.Tensor]:
    """Class means and the shared Ledoit-Wolf precision (what ``mahalanobis`` takes)."""
    classes = sorted(set(labels.tolist()))
    means = np.stack([rows[labels == c].mean(0) for c in classes])
    centred = rows - means[np.searchsorted(classes, labels)]
    return {"means": torch.from_numpy(means), "precision": torch.from_numpy(_precision(centred))}


def _held_out_distances(
    rows: np.ndarray, labels: np.ndarray, groups: np.ndarray, seed: int
) -> np.ndarray:
    """Each row's distance under a Gaussian fitted without it (cross-fitted in
    ``CROSS_FIT_PARTS`` parts; a group, a patient, is never split): the distance a new
    image would have, a little larger (each fit has fewer rows than the final one)."""
    keys, which = np.unique(groups, return_inverse=True)
    n_parts = min(CROSS_FIT_PARTS, len(keys))
    if n_parts < 2:  # one patient: nothing to hold out
        return mahalanobis(rows, _gaussian(rows, labels))
    part = (np.random.default_rng(seed).permutation(len(keys)) % n_parts)[which]
    out = np.empty(len(rows))
    for f in range(n_parts):
        fit = part != f
        out[~fit] = mahalanobis(rows[~fit], _gaussian(rows[fit], labels[fit]))
    return out


def fit_ood(
    model: nn.Module,
    x_train: torch.Tensor,
    y_train: np.ndarray,
    x_val: torch.Tensor,
    seed: int = 0,
    groups: Sequence[Any] | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors for ood.safetensors, the model.json ``ood`` entry).

    ``groups``: the patient of each training then validation image; held-out parts of
    the cross-fitting never split a patient (without: each image its own patient)."""
    rng = np.random.default_rng(seed)
    n_train, n_val = len(x_train), len(x_val)
    gid = np.asarray([str(g) for g in groups] if groups is not None else range(n_train + n_val))
    if len(gid) != n_train + n_val:
        raise ValueError(f"{len(gid)} groups for {n_train} + {n_val} images")
    rate = FALSE_FLAG_RATE / 2
    # features: Gaussian on training images; threshold the larger of the tolerance bounds
    # on the validation distances (unbiased, few) and on the training images' distances
    # cross-fitted (many; only as low as the network's features of its own training
    # images are tighter than a new image's)
    pick = rng.permutation(n_train)[:MAX_FIT_IMAGES]
    feats = penultimate_features(model, x_train[pick])
    labels = y_train[pick] if y_train.ndim == 1 else np.zeros(len(pick), int)  # multi-label
    tensors = _gaussian(feats, labels)
    val_feature = mahalanobis(penultimate_features(model, x_val), tensors)
    train_feature = _held_out_distances(feats, labels, gid[pick], seed)
    feature_t = max(flag_threshold(val_feature, rate), flag_threshold(train_feature, rate))
    # input statistics need no network: training and validation images, cross-fitted
    take = np.sort(rng.permutation(n_train + n_val)[:MAX_FIT_IMAGES])
    x_in = torch.cat([x_train[take[take < n_train]], x_val[take[take >= n_train] - n_train]])
    edges = bin_edges(x_in, seed=seed)
    stats = input_statistics(x_in, edges)
    one = np.zeros(len(stats), int)
    screen = _gaussian(stats, one)
    input_t = flag_threshold(_held_out_distances(stats, one, gid[take], seed), rate)
    tensors = {
        **tensors,
        "input_edges": torch.from_numpy(edges),
        "input_mean": screen["means"],
        "input_precision": screen["precision"],
        "thresholds": torch.tensor([feature_t, input_t], dtype=torch.float64),
    }
    val_input = input_distance(input_statistics(x_val, edges), tensors)
    val_scores = combined_scores(val_feature, val_input, tensors)
    info = {
        "method": "max of Mahalanobis distances (penultimate features; input intensity "
        "histogram, mean, spread, edge energy), each over its own threshold",
        "fitted_on": "features: train (means, covariance), val and train cross-fitted "
        "(threshold); input statistics: train + val (mean, covariance; threshold on their "
        "cross-fitted distances)",
        "threshold": 1.0,
        "target_false_flag_rate": FALSE_FLAG_RATE,
        "threshold_rule": f"upper tolerance bound: {CONFIDENCE:.0%} confidence that each "
        f"distance flags at most {rate:.1%} of in-distribution images",
        "val_flag_rate": float(np.mean(val_scores > 1.0)),
        "val_images": n_val,
        "input_images": len(take),
        "feature_threshold": feature_t,
        "input_threshold": input_t,
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
