"""Dataset fingerprint -> Plan, in the spirit of nnU-Net's planner, for classification.

The rules, each recorded in ``plan.notes`` so a user can see why:
- input size: the median image edge, kept when <= 64 px, else the largest of
  64..224 px whose measured training speed allows enough epochs in the budget;
- channels: 3 when most images carry real colour, else 1;
- normalisation: mean/std of the training images in display space;
- loss: cross-entropy; class-weighted when the largest/smallest class ratio
  exceeds 1.5; focal (with the same weights) above 10; BCE for multi-label;
- epochs: from the time budget and a short throughput probe of the model;
- memory format: channels_last (measured 26% faster for ResNet-18 at 64 px in bf16
  on a 2-core AVX512-BF16 CPU, 5% at 28 px);
- precision: bf16 autocast on CPUs with AVX512-BF16/AMX and on CUDA GPUs that
  support it, fp16 AMP on older GPUs, else fp32.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from tqdm import tqdm

from scandx.core.device import detect_device
from scandx.data.cache import PreprocessedCache, default_cache, stable_hash
from scandx.errors import BadImageError, ScandxError
from scandx.tasks.classification.data.images import (
    cache_for,
    case_key,
    decoded,
    is_grey,
    reader_version,
)
from scandx.tasks.classification.data.manifest import UNLABELLED, Case, Manifest
from scandx.tasks.classification.ladder import choose_network
from scandx.tasks.classification.plan import Augmentation, Plan

log = logging.getLogger(__name__)

MAX_DEPTH = 32  # frames of a planned 3D input
DEFAULT_BUDGET_S = 600.0


def fingerprint(manifest: Manifest, skip_bad: bool = False) -> dict:
    """Decode every image once: dimensionality, sizes, channels, colour, intensity statistics.

    Each image's statistics and its decoded pixels go to the preprocessed cache
    (``data/cache.py``): ``load_cases`` then preprocesses from the cached pixels instead of
    decoding again, and a later fingerprint of the same files decodes nothing.

    The data set is 2D or 3D by the majority of its images; an image of the other kind
    is a bad file, like an unreadable one. Bad images raise BadImageError (or, with
    ``skip_bad``, are removed from the manifest and listed in ``manifest.skipped``).
    """
    seen = []  # (case, spatial dims, shape, grey, channel means, channel mean squares)
    cache = default_cache()
    for case in tqdm(manifest.cases, desc="fingerprint", unit="img", leave=False, disable=None):
        try:
            seen.append((case, *image_stats(case, cache)))
        except BadImageError as e:
            if not skip_bad:
                raise
            manifest.skipped.append((e.where or case.path, e.reason))
            continue
    if not seen:
        raise ScandxError("no readable images", manifest.source)
    dims = 3 if 2 * sum(1 for s in seen if s[1] == 3) > len(seen) else 2
    kept = []
    for item in seen:
        case, d, shape = item[0], item[1], item[2]
        if d != dims:
            reason = (
                f"multi-frame image ({shape[0]} frames) in a data set of single-frame images"
                if d == 3
                else f"{d}D image in a data set of volumes (3D)"
            )
            if not skip_bad:
                raise BadImageError(reason, case.path)
            manifest.skipped.append((case.path, reason))
            continue
        kept.append(item)
    manifest.cases = [k[0] for k in kept]
    sums, sq, count = np.zeros(3), np.zeros(3), 0
    for case, _, _, _, m, q in kept:
        if case.split in ("train", UNLABELLED):  # every training image, labelled or not
            sums[: len(m)] += m
            sq[: len(q)] += q
            count += 1
    shapes = np.array([k[2] for k in kept])
    mean = sums / max(count, 1)
    std = np.sqrt(np.maximum(sq / max(count, 1) - mean**2, 1e-8))
    return {
        "cases": len(kept),
        "spatial_dims": dims,
        "median_size": [int(v) for v in np.median(shapes, axis=0)],
        "min_size": [int(v) for v in shapes.min(axis=0)],
        "max_size": [int(v) for v in shapes.max(axis=0)],
        "colour_fraction": sum(1 for k in kept if not k[3]) / len(kept),
        "mean": mean.tolist(),
        "std": std.tolist(),
        "class_counts": {s: manifest.class_counts(s) for s in ("train", "val", "test")},
        "skipped": len(manifest.skipped),
    }


def _stats_vector(arr: np.ndarray) -> np.ndarray:
    """[spatial dims, grey, channels kept, *shape, *channel means, *channel mean squares]."""
    grey = is_grey(arr)
    a = arr[:1] if grey else arr
    flat = a.reshape(a.shape[0], -1).astype(np.float64)
    head = [arr.ndim - 1, float(grey), a.shape[0], *arr.shape[1:]]
    return np.concatenate([np.array(head, np.float64), flat.mean(1), (flat**2).mean(1)])


def image_stats(
    case: Case, cache: PreprocessedCache | None
) -> tuple[int, tuple[int, ...], bool, np.ndarray, np.ndarray]:
    """(spatial dims, shape, grey, channel means, channel mean squares) of one image, from
    the cache when this content was fingerprinted before; else decoded (the pixels are
    cached too, for ``load_cases``)."""
    cache = cache_for(case, cache)
    if cache is None:
        return _unpack(_stats_vector(decoded(case, None)))  # type: ignore[return-value]
    key = stable_hash("stats", case_key(case), reader_version())
    build = lambda: {"v": _stats_vector(decoded(case, cache))}  # noqa: E731
    arrays, hit = cache.fetch("cls-stats", key, ("v",), build)
    stats = _unpack(np.asarray(arrays["v"]))
    if stats is None:  # a damaged entry: decode again, and mend it
        log.warning("damaged fingerprint entry in the preprocessed cache: rebuilding it")
        arrays = build()
        cache.put("cls-stats", key, arrays)
        stats = _unpack(arrays["v"])
    return stats  # type: ignore[return-value]


def _unpack(vec: np.ndarray) -> tuple[int, tuple[int, ...], bool, np.ndarray, np.ndarray] | None:
    if vec.ndim != 1 or vec.size < 3:
        return None
    dims, grey, c = int(vec[0]), bool(vec[1]), int(vec[2])
    if vec.size != 3 + dims + 2 * c:
        return None
    shape = tuple(int(v) for v in vec[3 : 3 + dims])
    rest = vec[3 + dims :]
    return dims, shape, grey, np.array(rest[:c]), np.array(rest[c:])


def make_plan(
    manifest: Manifest,
    fp: dict,
    *,
    time_budget_s: float | None = None,
    seed: int = 0,
    model: str | None = None,
    probe: bool = True,
    network: dict[str, Any] | None = None,
) -> Plan:
    """Choose every hyperparameter from the fingerprint and the time budget.

    ``network``: use this one ({"model", "model_kwargs", "input_size"}: a pretrained
    encoder's, ``train --init``) instead of walking the ladder; its epochs still come
    from its measured speed and the budget."""
    notes: list[str] = list(manifest.notes)  # what the source checks merged or linked
    budget = float(time_budget_s or DEFAULT_BUDGET_S)
    device, precision = detect_device()
    notes.append(f"device {device}, precision {precision} (autocast where supported)")
    channels = 3 if fp["colour_fraction"] > 0.5 else 1
    notes.append(f"{channels} channel(s): {fp['colour_fraction']:.0%} of images carry colour")
    dims = int(fp.get("spatial_dims", 2))
    native = int(max(fp["median_size"][-2:]))  # in-plane edge
    n_train = len(manifest.in_split("train"))
    batch = plan_batch_size(n_train, native, dims)
    n_classes = len(manifest.classes)
    depth = _plan_depth(fp["median_size"][0]) if dims == 3 else None
    if depth:
        notes.append(
            f"3D: volumes of median shape {fp['median_size']} -> depth {depth} (median frames, "
            f"multiple of 4, 8..{MAX_DEPTH}); in-plane augmentation only"
        )
    val_n = len(manifest.in_split("val"))
    pick = choose_network(
        native,
        model,
        dims,
        depth,
        channels,
        batch,
        n_classes,
        n_train,
        val_n,
        budget,
        device,
        precision,
        probe,
        network,
    )
    notes.extend(pick.notes)
    name, kwargs, shape, epochs = pick.name, pick.kwargs, pick.shape, pick.epochs

    loss, weights = _choose_loss(manifest, notes)
    hflip = False
    notes.append("no horizontal flips: laterality matters in most medical images")
    plan = Plan(
        task=manifest.task,
        classes=list(manifest.classes),
        spatial_dims=dims,
        in_channels=channels,
        input_size=shape,
        intensity_mean=[float(v) for v in fp["mean"][:channels]],
        intensity_std=[float(v) for v in fp["std"][:channels]],
        model=name,
        model_kwargs=kwargs,
        loss=loss,
        class_weights=weights,
        augmentation=Augmentation(hflip=hflip),
        batch_size=batch,
        epochs=epochs,
        lr=2e-3 if batch >= 128 else 1e-3,
        weight_decay=5e-4,
        warmup_epochs=1 if epochs >= 5 else 0,
        early_stopping_patience=max(8, epochs // 2),
        min_epochs=max(1, epochs // 2),
        device=device,
        precision=precision,
        channels_last=dims == 2,
        seed=seed,
        time_budget_s=budget,
        notes=notes,
        fingerprint=fp,
    )
    return plan.validate()


def plan_batch_size(n_train: int, native: int, dims: int) -> int:
    """128 images (32 above 64 px; 8 volumes), fewer for small sets: at least ~8 steps
    per epoch, since small data sets need steps, not big batches."""
    batch = (128 if native <= 64 else 32) if dims == 2 else 8
    floor = 8 if dims == 2 else 2
    return int(max(floor, min(batch, 2 ** math.floor(math.log2(max(n_train / 8, 1))))))


def _choose_loss(manifest: Manifest, notes: list[str]) -> tuple[str, list[float] | None]:
    counts = np.array(list(manifest.class_counts("train").values()), dtype=float)
    if manifest.task == "multilabel":
        notes.append("multi-label: one sigmoid per label, binary cross-entropy")
        return "bce", None
    ratio = counts.max() / max(counts.min(), 1.0)
    weights = (counts.sum() / (len(counts) * np.maximum(counts, 1.0))).round(4).tolist()
    if ratio > 10:
        notes.append(f"class ratio {ratio:.1f} > 10: focal loss with inverse-frequency weights")
        return "focal", weights
    if ratio > 1.5:
        notes.append(f"class ratio {ratio:.1f} > 1.5: class-weighted cross-entropy")
        return "weighted_ce", weights
    notes.append(f"class ratio {ratio:.1f}: plain cross-entropy")
    return "ce", None


def _plan_depth(frames: int) -> int:
    return int(min(MAX_DEPTH, max(8, 4 * round(frames / 4))))
