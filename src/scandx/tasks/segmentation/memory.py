"""Training-memory estimate for the planned U-Net, so that patch and batch fit a budget.

The estimate counts the U-Net's feature-map elements per sample (filters x voxels at
every level) and multiplies by bytes per element kept for the backward pass, a factor
fitted to measured peak memory of training steps on this CPU (benchmarks/seg_memory.py
prints estimate against measurement): about 20 x 4 bytes per feature-map element in
fp32 and 14 x 4 in bf16 autocast, plus 64 MB. On the configurations measured it
over-estimates by 1.1-1.9x (conservative by design).
"""

from __future__ import annotations

import math
import os

BYTES_PER_ELEMENT = {"fp32": 80, "bf16": 56, "fp16": 56}
FIXED_BYTES = 64 * 2**20
BUDGET_FRACTION = 0.4  # of the memory available when planning


def filters_for(levels: int) -> list[int]:
    """DynUNet filters per level as scandx builds it (models/monai_nets.py)."""
    return [min(16 * 2**i, 320) for i in range(levels)]


def feature_elements(patch: list[int], strides: list[list[int]]) -> int:
    """Feature-map elements of one sample summed over the U-Net's levels."""
    size, total = list(patch), 0
    for f, step in zip(filters_for(len(strides)), strides, strict=True):
        size = [max(1, n // s) for n, s in zip(size, step, strict=True)]
        total += f * math.prod(size)
    return total


def estimate_train_bytes(
    patch: list[int], strides: list[list[int]], batch: int, precision: str
) -> int:
    per = BYTES_PER_ELEMENT.get(precision, BYTES_PER_ELEMENT["fp32"])
    return FIXED_BYTES + batch * feature_elements(patch, strides) * per


def available_bytes(device: str) -> int:
    """Free memory where training runs: the GPU's free memory, else available RAM."""
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info()[0])
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # not Linux: assume a small laptop
        return 8 * 2**30


def default_budget(device: str) -> int:
    return int(BUDGET_FRACTION * available_bytes(device))
