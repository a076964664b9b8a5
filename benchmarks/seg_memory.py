"""Segmentation training memory: scandx's estimate (segmentation/memory.py) against the
measured peak of real training steps, each configuration in a fresh process.

    python benchmarks/seg_memory.py

Measured: growth of the process's peak resident memory (ru_maxrss) over two training
steps (forward, Dice + CE loss, backward, AdamW), after the model is built.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys

CONFIGS = [  # patch, batch, channels, classes, precision
    ([192, 192], 8, 3, 2, "bf16"),
    ([192, 192], 8, 3, 2, "fp32"),
    ([192, 192], 16, 3, 2, "bf16"),
    ([48, 48], 8, 1, 2, "bf16"),
    ([80, 80, 80], 2, 2, 5, "bf16"),
    ([64, 96, 96], 2, 1, 2, "bf16"),
    ([16, 192, 192], 2, 1, 2, "bf16"),
]


def child(patch: list[int], batch: int, ch: int, k: int, precision: str) -> None:
    import torch
    from monai.losses import DiceCELoss

    from scandx.models import create_model
    from scandx.tasks.segmentation.budget import synthetic_step
    from scandx.tasks.segmentation.plan import unet_layout

    strides, kernels = unet_layout(patch, [1.0] * len(patch))
    torch.manual_seed(0)
    model = create_model(
        "dynunet", len(patch), ch, k, input_size=patch, strides=strides, kernels=kernels
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    x, y = torch.randn(batch, ch, *patch), torch.randint(0, k, (batch, 1, *patch))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    for _ in range(2):
        synthetic_step(model, opt, loss_fn, x, y, precision)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"measured": peak - base, "strides": strides}))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*json.loads(sys.argv[2]))
        return
    from scandx.tasks.segmentation.memory import estimate_train_bytes

    head = ("patch", "batch", "ch", "prec", "estimate MB", "measured MB", "ratio")
    print(
        f"{head[0]:<16}{head[1]:>6}{head[2]:>4}{head[3]:>6}{head[4]:>13}{head[5]:>13}{head[6]:>7}"
    )
    for cfg in CONFIGS:
        out = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(cfg)],
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        patch, batch, ch, _, precision = cfg
        est = estimate_train_bytes(patch, r["strides"], batch, precision)
        print(
            f"{'x'.join(map(str, patch)):<16}{batch:>6}{ch:>4}{precision:>6}"
            f"{est / 2**20:>13.0f}{r['measured'] / 2**20:>13.0f}{est / r['measured']:>7.2f}"
        )


if __name__ == "__main__":
    main()
