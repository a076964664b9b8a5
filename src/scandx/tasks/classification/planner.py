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
import time

import numpy as np
import torch
from tqdm import tqdm

from scandx.core.device import detect_device
from scandx.errors import BadImageError, ScandxError
from scandx.models import create_model, min_input_size
from scandx.tasks.classification.data.images import is_grey, read_case
from scandx.tasks.classification.data.manifest import Manifest
from scandx.tasks.classification.plan import Augmentation, Plan

log = logging.getLogger(__name__)

SIZES = (64, 96, 128, 160, 192, 224)
MIN_EPOCHS = 15
MAX_DEPTH = 32  # frames of a planned 3D input
DEFAULT_BUDGET_S = 600.0


def fingerprint(manifest: Manifest, skip_bad: bool = False) -> dict:
    """Decode every image once: dimensionality, sizes, channels, colour, intensity statistics.

    The data set is 2D or 3D by the majority of its images; an image of the other kind
    is a bad file, like an unreadable one. Bad images raise BadImageError (or, with
    ``skip_bad``, are removed from the manifest and listed in ``manifest.skipped``).
    """
    seen = []  # (case, spatial dims, shape, grey, channel means, channel mean squares)
    for case in tqdm(manifest.cases, desc="fingerprint", unit="img", leave=False, disable=None):
        try:
            arr = read_case(case)
        except BadImageError as e:
            if not skip_bad:
                raise
            manifest.skipped.append((e.where or case.path, e.reason))
            continue
        grey = is_grey(arr)
        a = arr[:1] if grey else arr
        flat = a.reshape(a.shape[0], -1).astype(np.float64)
        seen.append((case, arr.ndim - 1, arr.shape[1:], grey, flat.mean(1), (flat**2).mean(1)))
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
        if case.split == "train":
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


def make_plan(
    manifest: Manifest,
    fp: dict,
    *,
    time_budget_s: float | None = None,
    seed: int = 0,
    model: str | None = None,
    probe: bool = True,
) -> Plan:
    """Choose every hyperparameter from the fingerprint and the time budget."""
    notes: list[str] = []
    budget = float(time_budget_s or DEFAULT_BUDGET_S)
    device, precision = detect_device()
    notes.append(f"device {device}, precision {precision} (autocast where supported)")
    channels = 3 if fp["colour_fraction"] > 0.5 else 1
    notes.append(f"{channels} channel(s): {fp['colour_fraction']:.0%} of images carry colour")
    dims = int(fp.get("spatial_dims", 2))
    native = int(max(fp["median_size"][-2:]))  # in-plane edge
    n_train = len(manifest.in_split("train"))
    batch = (128 if native <= 64 else 32) if dims == 2 else 8
    # at least ~8 steps per epoch: small data sets need steps, not big batches
    floor = 8 if dims == 2 else 2
    batch = int(max(floor, min(batch, 2 ** math.floor(math.log2(max(n_train / 8, 1))))))
    n_classes = len(manifest.classes)
    depth = _plan_depth(fp["median_size"][0]) if dims == 3 else None
    if depth:
        notes.append(
            f"3D: volumes of median shape {fp['median_size']} -> depth {depth} (median frames, "
            f"multiple of 4, 8..{MAX_DEPTH}); in-plane augmentation only"
        )
    chosen = None
    for name, size, kwargs in _candidates(native, model, dims):
        shape = [size, size] if depth is None else [max(depth, min_input_size(name)), size, size]
        step_s = (
            _probe_step_seconds(name, channels, shape, batch, precision, device, n_classes, kwargs)
            if probe
            else None
        )
        epoch_s = None if step_s is None else step_s * math.ceil(n_train / batch)
        chosen = (name, size, kwargs, epoch_s, shape)
        if epoch_s is None or epoch_s * MIN_EPOCHS <= 0.8 * budget:
            break
        notes.append(
            f"rejected {name} {kwargs or ''} at {size}px: {epoch_s:.1f}s/epoch allows fewer "
            f"than {MIN_EPOCHS} epochs in 80% of {budget:.0f}s"
        )
    assert chosen is not None
    name, size, kwargs, epoch_s, shape = chosen
    if epoch_s:
        epochs = int(max(3, min(200, (0.8 * budget) // epoch_s)))
        notes.append(
            f"{name} {kwargs or ''} at {size}px (median image edge {native}px): measured "
            f"{epoch_s:.1f}s/epoch -> {epochs} epochs in 80% of the {budget:.0f}s budget "
            f"(first candidate allowing >= {MIN_EPOCHS} epochs)"
        )
    else:
        epochs = 30
        notes.append(f"{name} at {size}px (median image edge {native}px); {epochs} epochs")

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
        early_stopping_patience=max(5, epochs // 3),
        min_epochs=max(1, epochs // 3),
        device=device,
        precision=precision,
        channels_last=dims == 2,
        seed=seed,
        time_budget_s=budget,
        notes=notes,
        fingerprint=fp,
    )
    return plan.validate()


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


def _candidates(native: int, model: str | None, dims: int = 2) -> list[tuple[str, int, dict]]:
    """(model, in-plane input size, model kwargs) in order of preference: most capable first.

    3D volumes: in-plane 64 px at most (a 3D step costs ~depth times a 2D one), and the
    standard ResNet stem only.
    """
    if native <= 64:
        sizes = [native]
    elif dims == 3:
        sizes = [64]
    else:
        sizes = sorted((s for s in SIZES if s <= native), reverse=True) or [64]
    names = [model] if model else ["resnet18"]
    out: list[tuple[str, int, dict]] = []
    for name in names:
        sizes_ok = [s for s in sizes if s >= min_input_size(name)] or [min_input_size(name)]
        for s in sizes_ok:
            if name.startswith("resnet") and dims == 3:
                out.append((name, s, {"small_stem": False}))
            elif name.startswith("resnet") and s <= 64:
                out.append((name, s, {"small_stem": True}))
                out.append((name, s, {"small_stem": False}))
            else:
                out.append((name, s, {}))
    if not model:
        out.append(("simple-cnn", min(sizes[-1], 64), {}))
    return out


def _probe_step_seconds(
    name: str,
    channels: int,
    shape: list[int],
    batch: int,
    precision: str,
    device: str,
    classes: int,
    kwargs: dict | None = None,
) -> float | None:
    """Seconds per training step at ``batch``: the fastest of 3 timed steps after a warm-up.

    The minimum, not the mean: other processes only ever make a step slower.
    """
    try:
        torch.manual_seed(0)
        dims = len(shape)
        model = create_model(name, dims, channels, classes, input_size=shape, **(kwargs or {}))
        model = model.to(device)
        x = torch.randn(batch, channels, *shape, device=device)
        if dims == 2:
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        y = torch.randint(0, classes, (batch,), device=device)
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        times = []
        for i in range(4):
            t = time.perf_counter()
            with torch.autocast(device, dtype=dtype, enabled=precision != "fp32"):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if device == "cuda":
                torch.cuda.synchronize()
            if i:
                times.append(time.perf_counter() - t)
        return float(np.min(times))
    except Exception as e:  # the probe is advice; never fail a plan on it
        log.warning("throughput probe failed (%s); using default epochs", e)
        return None
