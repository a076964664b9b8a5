"""Segmentation plan from a data fingerprint, in the spirit of nnU-Net.

- 2D or 3D from the images' dimensionality; volumes whose slices are much thicker than
  their pixels are wide (anisotropy > 3) and few (< 16 at the target spacing) get a 2D
  U-Net run slice by slice along the thick axis, others a 3D U-Net whose kernels and
  strides follow the spacing (nnU-Net's rule); ``dims`` overrides the choice;
- target spacing: the median spacing when cases differ, with nnU-Net's anisotropy rule
  (the thick axis takes its 10th percentile spacing, not its median);
- normalisation by modality: CT -> clip to the 0.5/99.5 percentiles of foreground
  voxels of the training cases, then z-score with their mean/std; anything else ->
  z-score per image and channel, inside the field-of-view mask when one is given;
- patch: the median image shape, capped (2D 192 px edge, 3D 96 voxels per edge and a
  voxel budget), each edge a multiple of 16 (the U-Net's down-sampling);
- patch and batch shrunk until the estimated training memory fits a budget (memory.py;
  default 40% of the free RAM or GPU memory);
- epochs, steps and validation from a timed probe of the U-Net at that patch and the
  time budget (budget.py);
- foreground oversampling: a third of the patches are centred on a foreground voxel.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from scandx.core.device import detect_device
from scandx.core.plan import PlanBase
from scandx.core.plan_check import Bounds, positive
from scandx.errors import ScandxError
from scandx.tasks.segmentation.budget import (
    post_training_passes,
    probe_step_seconds,
    sliding_windows,
    split_budget,
    validation_case_seconds,
)
from scandx.tasks.segmentation.memory import default_budget, estimate_train_bytes
from scandx.tasks.segmentation.sources import SegManifest

log = logging.getLogger(__name__)

MAX_EDGE_2D = 192
MAX_EDGE_3D = 96
MAX_VOXELS_3D = 64 * 96 * 96
ANISOTROPY = 3.0  # thick-axis spacing over the finest in-plane spacing
MIN_3D_SLICES = 16  # fewer slices than this along a thick axis -> slice-wise 2D


@dataclass(kw_only=True)
class SegPlan(PlanBase):
    """Segmentation plan (``task`` is "segmentation")."""

    task: str = "segmentation"
    labels: dict[str, str]  # "value" -> name (JSON keys are strings)
    regions: dict[str, list[int]] = field(default_factory=dict)  # evaluated label unions
    spatial_dims: int = 2
    in_channels: int = 1
    patch_size: list[int] = field(default_factory=lambda: [128, 128])
    slice_axis: int | None = None  # 2D U-Net on volumes: the axis sliced along
    batch_size: int = 8
    model: str = "dynunet"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    normalization: str = "zscore_per_image"  # or "ct"
    ct_clip: list[float] | None = None
    ct_mean: float | None = None
    ct_std: float | None = None
    use_fov: bool = False
    target_spacing: list[float] | None = None  # resample to this when cases differ
    foreground_fraction: float = 0.33
    epochs: int = 50
    steps_per_epoch: int = 50
    lr: float = 2e-3
    weight_decay: float = 1e-4
    flips: bool = True
    spatial_augment: bool = True  # in-plane rotation and scaling (augment.py)
    intensity_augment: bool = True  # brightness, contrast, gamma, noise
    tta_flips: bool = True
    val_every: int = 1  # epochs between validations (sliding window over whole cases)
    val_cases: int | None = None  # validation cases used (the first N; None: all): budget.py
    val_fraction: float = 0.2
    memory_budget_gb: float | None = None  # training memory the patch and batch fit in
    time_budget_s: float | None = 600.0
    fingerprint: dict[str, Any] = field(default_factory=dict)

    BOUNDS: ClassVar[dict[str, Bounds]] = {
        **PlanBase.BOUNDS,
        **positive("batch_size", "ct_std", "target_spacing", "steps_per_epoch", "val_every"),
        **positive("val_cases"),
        **positive("memory_budget_gb", "patch_size", "in_channels"),
        "spatial_dims": Bounds(2, 3),
        "foreground_fraction": Bounds(0, 1),
        "epochs": Bounds(1, 100_000),
        "lr": Bounds(0, 10, low_open=True),
        "weight_decay": Bounds(0, 10),
        "val_fraction": Bounds(0, 0.9, low_open=True),
        "slice_axis": Bounds(0, 2),
    }
    CHOICES: ClassVar[dict[str, tuple[Any, ...]]] = {
        **PlanBase.CHOICES,
        "task": ("segmentation",),
        "normalization": ("zscore_per_image", "ct"),
    }
    MODEL_KIND: ClassVar[str | None] = "segmenter"

    @property
    def n_classes(self) -> int:
        return len(self.labels)

    @property
    def data_dims(self) -> int:
        """Dimensionality of the cases (3 for volumes segmented slice by slice)."""
        return self.spatial_dims + (self.slice_axis is not None)

    @property
    def window(self) -> list[int]:
        """Sliding-window / sampling size in the cases' grid (1 along the slice axis)."""
        if self.slice_axis is None:
            return list(self.patch_size)
        w = list(self.patch_size)
        w.insert(self.slice_axis, 1)
        return w

    def validate(self) -> SegPlan:
        if len(self.patch_size) != self.spatial_dims:
            raise ScandxError("invalid plan: patch_size length != spatial_dims")
        return super().validate()


def _patch(shape: list[int], dims: int, anisotropic: bool = False) -> list[int]:
    """Median shape capped per edge (3D: 96, or 192 in-plane for anisotropic data whose
    few slices leave room) and, in 3D, to a voxel budget; multiples of 16."""
    cap = MAX_EDGE_2D if dims == 2 or anisotropic else MAX_EDGE_3D
    patch = [max(16, min(cap, 16 * (s // 16))) for s in shape]
    while dims == 3 and math.prod(patch) > MAX_VOXELS_3D:
        k = int(np.argmax(patch))
        patch[k] -= 16
    return patch


def target_spacing(fp: dict[str, Any]) -> tuple[list[float] | None, int | None]:
    """(spacing to resample to, None when cases agree; the thick axis of anisotropic
    volumes or None). nnU-Net's rule: the median spacing, but when one axis is more than
    ANISOTROPY times coarser than the others and has few voxels, that axis takes the 10th
    percentile of its spacings (the median would throw away the through-plane
    resolution of the finer-sliced cases)."""
    median = list(fp["median_spacing"])
    if fp["spatial_dims"] != 3:
        return (median if fp.get("spacings_differ") else None), None
    thick = int(np.argmax(median))
    others = [median[a] for a in range(3) if a != thick]
    sizes = [fp["median_shape"][a] for a in range(3) if a != thick]
    aniso = median[thick] > ANISOTROPY * max(others)
    few = fp["median_shape"][thick] * ANISOTROPY < min(sizes)
    target = median
    if aniso and few and fp.get("spacings_differ"):
        p10 = fp.get("spacing_p10", median)[thick]
        target = list(median)
        target[thick] = max(p10, max(others))
    return (target if fp.get("spacings_differ") else None), (thick if aniso else None)


def unet_layout(patch: list[int], spacing: list[float]) -> tuple[list[list[int]], list[list[int]]]:
    """(strides, kernels) per level, nnU-Net style: an axis is halved only while its
    spacing is within 2x of the finest and its size stays >= 4 (at most 5 levels);
    kernels are 1 on axes still more than 2x coarser than the finest (no mixing across
    thick slices)."""
    size, sp = list(patch), list(spacing)
    dims = len(patch)
    kernels = [[3 if sp[a] <= 2 * min(sp) else 1 for a in range(dims)]]
    strides = [[1] * dims]
    while len(strides) < 5:
        step = [2 if size[a] // 2 >= 4 and sp[a] <= 2 * min(sp) else 1 for a in range(dims)]
        if 2 not in step:
            break
        size = [n // st for n, st in zip(size, step, strict=True)]
        sp = [v * st for v, st in zip(sp, step, strict=True)]
        strides.append(step)
        kernels.append([3 if sp[a] <= 2 * min(sp) else 1 for a in range(dims)])
    return strides, kernels


def fit_memory(
    patch: list[int], batch: int, spacing: list[float], precision: str, budget: int
) -> tuple[list[int], int, list[list[int]], list[list[int]], str]:
    """(patch, batch, strides, kernels, note) whose estimated training memory fits
    ``budget`` bytes: halve the batch down to 2, then shrink the longest patch edge by
    16, as nnU-Net shrinks its patch to fit the GPU."""
    strides, kernels = unet_layout(patch, spacing)
    est = estimate_train_bytes(patch, strides, batch, precision)
    shrunk = False
    while est > budget:
        if batch > 2:
            batch = max(2, batch // 2)
        elif max(patch) > 16:
            k = int(np.argmax(patch))
            patch = patch[:k] + [patch[k] - 16] + patch[k + 1 :]
        else:
            raise ScandxError(
                f"a training step needs about {est / 2**30:.2f} GiB even at batch 2 and "
                f"patch {patch}; the memory budget is {budget / 2**30:.2f} GiB"
            )
        shrunk = True
        strides, kernels = unet_layout(patch, spacing)
        est = estimate_train_bytes(patch, strides, batch, precision)
    note = (
        f"training memory ~{est / 2**30:.2f} GiB estimated for batch {batch} x patch {patch} "
        f"(budget {budget / 2**30:.1f} GiB{'; patch/batch reduced to fit' if shrunk else ''})"
    )
    return patch, batch, strides, kernels, note


def make_seg_plan(
    manifest: SegManifest,
    fp: dict[str, Any],
    *,
    time_budget_s: float | None = None,
    seed: int = 0,
    probe: bool = True,
    dims: int | None = None,
    memory_budget_gb: float | None = None,
) -> SegPlan:
    """The plan for ``manifest``; ``dims`` (2 or 3) overrides the 2D/3D choice;
    ``memory_budget_gb`` the training-memory budget (default: 40% of what is free)."""
    notes: list[str] = list(manifest.notes)
    budget = float(time_budget_s or 600.0)
    device, precision = detect_device()
    data_dims = fp["spatial_dims"]
    target, thick = target_spacing(fp)
    spacing = target or fp["median_spacing"]
    # the median case's shape on the grid it is trained on
    shape = [
        max(1, round(n * s / t))
        for n, s, t in zip(fp["median_shape"], fp["median_spacing"], spacing, strict=True)
    ]
    slice_axis = None
    if data_dims == 3:
        if dims is None and thick is not None and shape[thick] < MIN_3D_SLICES:
            dims, why = (
                2,
                (
                    f"anisotropic ({spacing[thick]:g} mm slices vs "
                    f"{min(spacing):g} mm pixels) with {shape[thick]} slices"
                ),
            )
        else:
            why = "requested" if dims else "volumes"
        dims = dims or 3
        if dims == 2:
            slice_axis = thick if thick is not None else int(np.argmax(spacing))
    else:
        if dims == 3:
            raise ScandxError("3D was requested but the cases are 2D images", manifest.source)
        dims, why = 2, "2D images"
    in_plane = [n for a, n in enumerate(shape) if a != slice_axis]
    patch = _patch(in_plane, dims, anisotropic=thick is not None)
    layout_spacing = [v for a, v in enumerate(spacing) if a != slice_axis]
    mem_budget = int(memory_budget_gb * 2**30) if memory_budget_gb else default_budget(device)
    patch, batch, strides, kernels, memory_note = fit_memory(
        patch, 8 if dims == 2 else 2, layout_spacing, precision, mem_budget
    )
    if slice_axis is not None:
        notes.append(
            f"2D U-Net (DynUNet) slice by slice along axis {slice_axis} ({why}); patch "
            f"{patch} from the in-plane median shape {in_plane}"
        )
    else:
        notes.append(
            f"{dims}D U-Net (DynUNet, {why}); patch {patch} from median shape {shape}; "
            f"strides {strides[1:]}"
        )
    modality = [m.upper() for m in manifest.modality]
    ct = bool(modality) and all(m == "CT" for m in modality)
    if ct:
        notes.append(
            "CT: clip to foreground 0.5/99.5 percentiles "
            f"{fp['foreground_percentiles']}, z-score with foreground mean/std"
        )
    else:
        notes.append(
            "z-score per image and channel" + (" inside the FOV mask" if _has_fov(manifest) else "")
        )
    if target is not None:
        rule = "" if target == fp["median_spacing"] else " (thick axis: its 10th percentile)"
        notes.append(
            f"spacings differ between cases: resample to {target}{rule} (images linear, "
            "labels nearest); predictions go back to each case's own grid"
        )
    notes.append(memory_note)
    model_kwargs = {"strides": strides, "kernels": kernels}
    step_s = (
        probe_step_seconds(
            fp["channels"], len(manifest.labels), patch, batch, precision, model_kwargs, device
        )
        if probe
        else None
    )
    steps, val_every, val_cases, epochs = 50, 1, None, 50
    if step_s:
        window = (
            list(patch) if slice_axis is None else patch[:slice_axis] + [1] + patch[slice_axis:]
        )
        windows = sliding_windows(shape, window)
        split = split_budget(
            budget,
            step_s,
            n_val=len(manifest.in_split("val")),
            case_s=validation_case_seconds(step_s, windows, batch),
            passes=post_training_passes(dims == 2, dims),
        )
        epochs, steps, val_every = split.epochs, split.steps_per_epoch, split.val_every
        val_cases = split.val_cases
        notes.append(split.note.replace("per step", f"per step of {batch} patches", 1))
    if dims == 3:
        notes.append(
            "flip test-time augmentation off for 3D (4x the inference time); "
            "set tta_flips in plan.json to use it"
        )
    return SegPlan(
        labels={str(k): v for k, v in manifest.labels.items()},
        regions=manifest.regions,
        tta_flips=dims == 2,
        val_every=val_every,
        val_cases=val_cases,
        spatial_dims=dims,
        slice_axis=slice_axis,
        in_channels=fp["channels"],
        patch_size=patch,
        model_kwargs=model_kwargs,
        memory_budget_gb=round(mem_budget / 2**30, 2),
        batch_size=batch,
        normalization="ct" if ct else "zscore_per_image",
        ct_clip=fp["foreground_percentiles"] if ct else None,
        ct_mean=fp["foreground_mean"] if ct else None,
        ct_std=fp["foreground_std"] if ct else None,
        use_fov=_has_fov(manifest),
        target_spacing=target,
        epochs=epochs,
        steps_per_epoch=steps,
        device=device,
        precision=precision,
        seed=seed,
        time_budget_s=budget,
        notes=notes,
        fingerprint=fp,
    )


def _has_fov(manifest: SegManifest) -> bool:
    return any(c.fov for c in manifest.cases)
