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

from scandx.config import Augmentation, Plan
from scandx.data.images import is_grey, read_case
from scandx.data.manifest import Manifest
from scandx.errors import BadImageError, ScandxError
from scandx.models import create_model, min_input_size

log = logging.getLogger(__name__)

SIZES = (64, 96, 128, 160, 192, 224)
MIN_EPOCHS = 15
DEFAULT_BUDGET_S = 600.0


def fingerprint(manifest: Manifest, skip_bad: bool = False) -> dict:
    """Decode every image once: sizes, channels, colour, intensity statistics.

    Bad images raise BadImageError (or, with ``skip_bad``, are removed from the
    manifest and listed in ``manifest.skipped``).
    """
    shapes, colour = [], 0
    sums = np.zeros(3)
    sq = np.zeros(3)
    count = 0
    kept = []
    for case in tqdm(manifest.cases, desc="fingerprint", unit="img", leave=False, disable=None):
        try:
            arr = read_case(case)
            if arr.ndim != 3:
                raise BadImageError(
                    f"multi-frame image ({arr.shape[1]} frames); 2D classification needs "
                    "single-frame images",
                    case.path,
                )
        except BadImageError as e:
            if not skip_bad:
                raise
            manifest.skipped.append((e.where or case.path, e.reason))
            continue
        kept.append(case)
        shapes.append(arr.shape[-2:])
        grey = is_grey(arr)
        colour += 0 if grey else 1
        if case.split == "train":
            a = arr[:1] if grey else arr
            flat = a.reshape(a.shape[0], -1).astype(np.float64)
            sums[: a.shape[0]] += flat.mean(axis=1)
            sq[: a.shape[0]] += (flat**2).mean(axis=1)
            count += 1
    manifest.cases = kept
    if not kept:
        raise ScandxError("no readable images", manifest.source)
    hw = np.array(shapes)
    mean = sums / max(count, 1)
    std = np.sqrt(np.maximum(sq / max(count, 1) - mean**2, 1e-8))
    return {
        "cases": len(kept),
        "median_size": [int(v) for v in np.median(hw, axis=0)],
        "min_size": [int(v) for v in hw.min(axis=0)],
        "max_size": [int(v) for v in hw.max(axis=0)],
        "colour_fraction": colour / len(kept),
        "mean": mean.tolist(),
        "std": std.tolist(),
        "class_counts": {s: manifest.class_counts(s) for s in ("train", "val", "test")},
        "skipped": len(manifest.skipped),
    }


def detect_device() -> tuple[str, str]:
    """(device, precision) for this machine."""
    if torch.cuda.is_available():
        return "cuda", "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "cpu", "bf16" if cpu_has_bf16() else "fp32"


def cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


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
    native = int(max(fp["median_size"]))
    n_train = len(manifest.in_split("train"))
    batch = 128 if native <= 64 else 32
    # at least ~8 steps per epoch: small data sets need steps, not big batches
    batch = int(max(8, min(batch, 2 ** math.floor(math.log2(max(n_train / 8, 1))))))
    n_classes = len(manifest.classes)
    chosen = None
    for name, size, kwargs in _candidates(native, model):
        step_s = (
            _probe_step_seconds(name, channels, size, batch, precision, device, n_classes, kwargs)
            if probe
            else None
        )
        epoch_s = None if step_s is None else step_s * math.ceil(n_train / batch)
        chosen = (name, size, kwargs, epoch_s)
        if epoch_s is None or epoch_s * MIN_EPOCHS <= 0.8 * budget:
            break
        notes.append(
            f"rejected {name} {kwargs or ''} at {size}px: {epoch_s:.1f}s/epoch allows fewer "
            f"than {MIN_EPOCHS} epochs in 80% of {budget:.0f}s"
        )
    assert chosen is not None
    name, size, kwargs, epoch_s = chosen
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
        spatial_dims=2,
        in_channels=channels,
        input_size=[size, size],
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
        channels_last=True,
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


def _candidates(native: int, model: str | None) -> list[tuple[str, int, dict]]:
    """(model, input size, model kwargs) in order of preference: most capable first."""
    if native <= 64:
        sizes = [native]
    else:
        sizes = sorted((s for s in SIZES if s <= native), reverse=True) or [64]
    names = [model] if model else ["resnet18"]
    out: list[tuple[str, int, dict]] = []
    for name in names:
        sizes_ok = [s for s in sizes if s >= min_input_size(name)] or [min_input_size(name)]
        for s in sizes_ok:
            if name.startswith("resnet") and s <= 64:
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
    size: int,
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
        model = create_model(name, 2, channels, classes, input_size=[size, size], **(kwargs or {}))
        model = model.to(device).to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        x = torch.randn(batch, channels, size, size, device=device)
        x = x.contiguous(memory_format=torch.channels_last)
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
