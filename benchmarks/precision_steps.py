"""fp32 against bf16 on this CPU: the matmul peak and the planned U-Net training steps of
DRIVE (DynUNet 192 x 192, batch 8, 3 channels) and BraTS (DynUNet 80^3, batch 2, 2
channels, 5 labels), each the best of 3 steps after a warm-up, the speed cache off.

    python benchmarks/precision_steps.py

Tells whether a slow segmentation plan is the machine or the code: compare the steps
with a run of an older commit's `scandx plan` on the same machine.
"""

from __future__ import annotations

import os

import torch
from machine import commit, cpu_model
from throughput import matmul_peak

from scandx.tasks.segmentation.budget import probe_step_seconds

STRIDES_2D = [[1, 1], [2, 2], [2, 2], [2, 2], [2, 2]]
STRIDES_3D = [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]]
STEPS = [  # label, channels, classes, patch, batch, model_kwargs
    ("DRIVE step: DynUNet 192 x 192, batch 8", 3, 2, [192, 192], 8,
     {"strides": STRIDES_2D, "kernels": [[3, 3]] * 5}),
    ("BraTS step: DynUNet 80^3, batch 2, 2 channels", 2, 5, [80, 80, 80], 2,
     {"strides": STRIDES_3D, "kernels": [[3, 3, 3]] * 5}),
]  # fmt: skip


def main() -> None:
    os.environ["SCANDX_SPEED_CACHE"] = "off"
    print(f"{cpu_model()}, commit {commit()}, torch {torch.__version__}")
    print(f"{'measured':<48} {'fp32':>10} {'bf16':>10} {'speed-up':>9}")
    f32, b16 = (matmul_peak("cpu", dt) for dt in (torch.float32, torch.bfloat16))
    print(f"{'matmul peak (GFLOP/s)':<48} {f32:>10.1f} {b16:>10.1f} {b16 / f32:>8.1f}x")
    for label, channels, classes, patch, batch, kwargs in STEPS:
        s32, s16 = (
            probe_step_seconds(channels, classes, patch, batch, prec, kwargs)
            for prec in ("fp32", "bf16")
        )
        print(f"{label + ' (s)':<48} {s32:>10.3f} {s16:>10.3f} {s32 / s16:>8.1f}x")


if __name__ == "__main__":
    main()
