"""Training throughput: scandx's loop against a bare PyTorch loop, same model/batch/precision.

    python benchmarks/throughput.py                 # default configurations
    python benchmarks/throughput.py --images 4096 --epochs 3 --device cuda

scandx's number is the whole ``fit()``: seeded shuffling, augmentation, progress
bar, per-epoch validation, log.jsonl and two checkpoints per epoch; the default
sizes are PneumoniaMNIST's (4,708 train, 524 val images). The bare loop
does only forward, loss, backward and the optimiser step on the same in-memory
tensors. Both run in one process, alternating, and each keeps its best of
``--repeats`` runs; images/s counts training images only.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from scandx.core.device import detect_device
from scandx.core.engine import fit
from scandx.core.run_dir import RunDir
from scandx.models import create_model
from scandx.tasks.classification.plan import Plan
from scandx.tasks.classification.training.loop import ClassificationTraining, TrainData

CONFIGS = {
    "resnet18-28px": ("resnet18", 28, 128, {"small_stem": True}),
    "resnet18-64px": ("resnet18", 64, 64, {"small_stem": False}),
    "simple-cnn-28px": ("simple-cnn", 28, 128, {}),
}


def bare_loop(model, x, y, batch, epochs, device, precision, seed=0) -> float:
    model = model.to(memory_format=torch.channels_last)  # as scandx's plan does
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=5e-4)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), batch):
            idx = order[i : i + batch]
            xb, yb = x[idx].to(device), y[idx].to(device)
            xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device, dtype=dtype, enabled=precision != "fp32"):
                logits = model(xb)
            loss = F.cross_entropy(logits.float(), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def scandx_loop(plan: Plan, data: TrainData) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        fit(ClassificationTraining(plan, data), RunDir(Path(tmp)))
        if plan.device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"comma list of {list(CONFIGS)}")
    # default sizes are PneumoniaMNIST's train and val splits, so per-epoch costs
    # (validation, checkpoints) weigh what they weigh in a real run
    ap.add_argument("--images", type=int, default=4708)
    ap.add_argument("--val-images", type=int, default=524)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default=None, help="cpu or cuda (default: detected)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    device, precision = detect_device()
    device = args.device or device
    if device == "cpu" and args.device == "cpu":
        precision = "bf16" if precision == "bf16" else "fp32"

    rows = []
    for name in args.configs.split(","):
        model_name, size, batch, kwargs = CONFIGS[name]
        torch.manual_seed(0)
        x = torch.randn(args.images, 1, size, size)
        y = torch.randint(0, 2, (args.images,))
        xv, yv = (
            torch.randn(args.val_images, 1, size, size),
            torch.randint(0, 2, (args.val_images,)),
        )
        plan = Plan(
            task="binary",
            classes=["a", "b"],
            input_size=[size, size],
            model=model_name,
            model_kwargs=kwargs,
            batch_size=batch,
            epochs=args.epochs,
            warmup_epochs=0,
            early_stopping_patience=10_000,
            channels_last=True,
            device=device,
            precision=precision,
            intensity_mean=[0.0],
            intensity_std=[1.0],
        )
        data = TrainData(x, y, xv, yv)
        # warm-up both paths once (oneDNN/cuDNN kernel selection), then alternate
        warm = create_model(model_name, 2, 1, 2, input_size=[size, size], **kwargs).to(device)
        bare_loop(warm, x[: batch * 2], y[: batch * 2], batch, 1, device, precision)
        t_bare, t_scandx = float("inf"), float("inf")
        for _ in range(args.repeats):
            torch.manual_seed(0)
            model = create_model(model_name, 2, 1, 2, input_size=[size, size], **kwargs).to(device)
            t_bare = min(t_bare, bare_loop(model, x, y, batch, args.epochs, device, precision))
            t_scandx = min(t_scandx, scandx_loop(plan, data))
        n = args.images * args.epochs
        rows.append((name, batch, precision, n / t_bare, n / t_scandx, 1 - t_bare / t_scandx))

    print(
        f"\ndevice {device}, {torch.get_num_threads()} threads, "
        f"{args.images} images x {args.epochs} epochs, best of {args.repeats}"
    )
    head = f"{'config':<18} {'batch':>5} {'prec':>5} {'bare img/s':>11} {'scandx img/s':>13}"
    print(f"{head} {'overhead':>9}")
    print("-" * 66)
    for name, batch, prec, bare, ours, over in rows:
        print(f"{name:<18} {batch:>5} {prec:>5} {bare:>11.1f} {ours:>13.1f} {over:>8.1%}")


if __name__ == "__main__":
    main()
