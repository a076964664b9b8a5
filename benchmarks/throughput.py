"""Training throughput: scandx's loop against a bare PyTorch loop, and both against the
machine's measured matmul peak.

    python benchmarks/throughput.py                      # every ladder rung at 28 px
    python benchmarks/throughput.py --configs simple-cnn-28px --epochs 20 --repeats 3
    python benchmarks/throughput.py --precision fp32 --threads 1 --compile

First the machine: the best of several large square matmuls, fp32, and bf16 where the
CPU has native bf16 (AVX512-BF16 or AMX; on CUDA, the GPU), in GFLOP/s.

Then, per configuration (the planner's ladder, ``ladder.NETWORKS``, at PneumoniaMNIST's
28 px, stride-1 ResNet stems, batch 128 as the plan picks; and ResNet-18 at 64 px with
the standard stem), two loops on the same in-memory tensors, with the same network,
batch, precision (``detect_device()`` unless ``--precision``), memory format
(channels_last), loss (the plan's), optimiser (AdamW, the plan's lr and weight decay)
and gradient clipping (norm 1.0, ``Schedule.grad_clip``):

- bare: per epoch a seeded ``randperm``; per step the batch gathered and made
  channels_last, forward under autocast, loss, ``zero_grad``, backward,
  ``clip_grad_norm_``, ``AdamW.step``. Nothing else: no augmentation, no learning-rate
  schedule, no loss read back, no validation, no files.
- scandx: the whole ``fit()`` of ``ClassificationTraining`` in a temporary run folder:
  the same steps plus seeded augmentation (random affine, brightness, contrast), the
  warm-up/cosine schedule, the losses read back every 32 steps for the health checks
  and the log, the progress bar, validation of ``--val-images`` images every epoch,
  ``log.jsonl``, and ``last.ckpt`` (+ ``best.ckpt`` when better) every epoch.

The images are noise with a noisy learnable label (see ``images``), ``--images`` training
and ``--val-images`` validation images (PneumoniaMNIST's 4,708 and 524 by default).

The two alternate epoch by epoch in one process: after each epoch of ``fit()`` its
hook runs one bare epoch (on its own network and optimiser, kept across epochs), and
the hook's time is left out of fit's. Each pair is seconds apart, so on a shared
machine both sides see the same load; per configuration there are ``--epochs`` x
``--repeats`` pairs. Printed: images/s (training images) of the median epoch of each
side; the overhead, 1 - bare / scandx epoch time, as the median of the pairs with
their smallest and largest (the spread a shared machine puts on it), and the same on
this process's CPU clock (which leaves out time spent descheduled: steadier with
``--threads 1``); the bare loop's mean step in its fastest epoch, and its GFLOP/s:
FLOPs of one forward + backward (``FlopCounterMode``: matmuls and convolutions) over
that step, and their share of the matmul peak of the precision trained in.
``--compile`` also times a bare step with ``torch.compile``; ``--batch``,
``--contiguous`` and ``--threads`` change what the plan would pick.
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from machine import cpu_model
from torch.utils.flop_counter import FlopCounterMode

from scandx.core.device import autocast_dtype, cpu_has_bf16, detect_device, runtime_device
from scandx.core.engine import fit
from scandx.core.run_dir import RunDir
from scandx.tasks.classification.ladder import NETWORKS
from scandx.tasks.classification.plan import Plan
from scandx.tasks.classification.training.loop import (
    ClassificationTraining,
    TrainData,
    build_model,
)
from scandx.tasks.classification.training.losses import create_loss

WIDTHS = {0.5: "-half", 0.25: "-quarter"}


def ladder_configs() -> dict[str, tuple[str, dict[str, Any], int, int]]:
    """name -> (model, kwargs, px, batch): the ladder at 28 px, and ResNet-18 at 64 px."""
    out = {}
    for model, kwargs, _label in NETWORKS:
        kw = dict(kwargs, small_stem=True) if model.startswith("resnet") else dict(kwargs)
        out[f"{model}{WIDTHS.get(kw.get('width', 1.0), '')}-28px"] = (model, kw, 28, 128)
    out["resnet18-64px"] = ("resnet18", {"small_stem": False}, 64, 128)
    return out


CONFIGS = ladder_configs()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_peak(device: str, dtype: torch.dtype, repeats: int = 8) -> float:
    """GFLOP/s of the fastest of ``repeats`` large square matmuls."""
    n = 8192 if device.startswith("cuda") else 2048
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    best = math.inf
    for _ in range(repeats + 1):  # the first one warms up
        sync(device)
        t = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def machine_peaks(device: str) -> dict[str, float]:
    peaks = {"fp32": matmul_peak(device, torch.float32)}
    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        peaks["bf16"] = matmul_peak(device, torch.bfloat16)
        peaks["fp16"] = matmul_peak(device, torch.float16)
    elif not device.startswith("cuda") and cpu_has_bf16():
        peaks["bf16"] = matmul_peak(device, torch.bfloat16)
    return peaks


def make_plan(name: str, args, device: str, precision: str, epochs: int | None = None) -> Plan:
    model, kwargs, size, batch = CONFIGS[name]
    batch = args.batch or batch
    return Plan(
        task="binary",
        classes=["a", "b"],
        input_size=[size, size],
        model=model,
        model_kwargs=kwargs,
        batch_size=batch,
        epochs=epochs or args.epochs,
        lr=2e-3 if batch >= 128 else 1e-3,  # as the planner sets it
        early_stopping_patience=10_000,
        channels_last=not args.contiguous,
        device=device,
        precision=precision,
        intensity_mean=[0.0],
        intensity_std=[1.0],
    )


def step_flops(plan: Plan) -> int:
    """FLOPs (matmuls, convolutions) of one forward + backward at the plan's batch."""
    torch.manual_seed(0)
    model = build_model(plan)
    x = torch.randn(plan.batch_size, plan.in_channels, *plan.input_size)
    y = torch.randint(0, len(plan.classes), (plan.batch_size,))
    with FlopCounterMode(display=False) as counter:
        create_loss(plan)(model(x), y).backward()
    return counter.get_total_flops()


def new_model(plan: Plan) -> torch.nn.Module:
    torch.manual_seed(plan.seed)
    model = build_model(plan).to(plan.device)
    return model.to(memory_format=torch.channels_last) if plan.channels_last else model


class BareLoop:
    """A plain PyTorch training loop (see the module docstring), one epoch at a time."""

    def __init__(self, model: torch.nn.Module, x, y, plan: Plan, clip: float = 1.0) -> None:
        self.model, self.x, self.y, self.plan, self.clip = model, x, y, plan, clip
        self.kind = "cuda" if plan.device.startswith("cuda") else "cpu"
        lr, wd = plan.lr, plan.weight_decay
        self.opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
        fp16 = plan.precision == "fp16" and self.kind == "cuda"
        self.scaler = torch.amp.GradScaler(self.kind, enabled=fp16)
        self.loss_fn = create_loss(plan).to(plan.device)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.g = torch.Generator().manual_seed(plan.seed)

    def epoch(self) -> tuple[float, float]:
        """(wall s, CPU s) of one epoch."""
        plan, x, y, model = self.plan, self.x, self.y, self.model
        opt, scaler = self.opt, self.scaler
        device, batch, dtype = plan.device, plan.batch_size, autocast_dtype(plan.precision)
        sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        model.train()
        order = torch.randperm(len(y), generator=self.g)
        for i in range(0, len(y), batch):
            idx = order[i : i + batch]
            xb = x[idx].to(device, non_blocking=True)
            xb = xb.contiguous(memory_format=torch.channels_last) if plan.channels_last else xb
            yb = y[idx].to(device, non_blocking=True)
            with torch.autocast(self.kind, dtype=dtype or torch.float32, enabled=bool(dtype)):
                out = model(xb)
            loss = self.loss_fn(out.float(), yb)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(self.params, self.clip)
            scaler.step(opt)
            scaler.update()
        sync(device)
        return time.perf_counter() - t0, time.process_time() - c0


def paired_epochs(plan: Plan, data: TrainData) -> tuple[list, list, int]:
    """One ``fit()``, and after each of its epochs (in its hook) one bare epoch: per
    epoch (wall s, CPU s) of each, and fit's recoveries. A fit epoch is the time from
    the previous hook (or the call) to this one, the bare epoch's time left out."""
    bare = BareLoop(new_model(plan), data.x_train, data.y_train, plan)
    ours: list[tuple[float, float]] = []
    theirs: list[tuple[float, float]] = []
    last = [time.perf_counter(), time.process_time()]

    def hook(epoch: int, record: dict[str, Any]) -> None:
        sync(plan.device)
        ours.append((time.perf_counter() - last[0], time.process_time() - last[1]))
        theirs.append(bare.epoch())
        last[:] = time.perf_counter(), time.process_time()

    with tempfile.TemporaryDirectory() as tmp:
        last[:] = time.perf_counter(), time.process_time()
        result = fit(ClassificationTraining(plan, data), RunDir(Path(tmp)), hooks=[hook])
    return theirs, ours, len(result.recoveries)


def images(n: int, size: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise with a learnable label (a brighter centre) and 15% of the labels flipped, so
    training behaves as in a real run: the loss stays well above zero, the predictions
    vary (no recoveries from collapse)."""
    x = torch.randn(n, 1, size, size, generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    c, r = size // 2, size // 4
    x[:, :, c - r : c + r, c - r : c + r] += y.view(-1, 1, 1, 1).float()
    flip = torch.rand(n, generator=g) < 0.15
    return x, torch.where(flip, 1 - y, y)


def time_compile(plan: Plan, x, y) -> str:
    """Does ``torch.compile`` build this network here, and what does it do to a bare step?"""
    n = plan.batch_size * 4
    eager = BareLoop(new_model(plan), x[:n], y[:n], plan)
    try:
        t = time.perf_counter()
        compiled = BareLoop(torch.compile(new_model(plan)), x[:n], y[:n], plan)
        compiled.epoch()
        build = time.perf_counter() - t
        pairs = [(eager.epoch()[0], compiled.epoch()[0]) for _ in range(5)]
    except Exception as e:  # no C compiler, unsupported op, ...
        return f"does not build ({type(e).__name__}: {str(e).splitlines()[0][:80]})"
    e, c = min(p[0] for p in pairs) / 4, min(p[1] for p in pairs) / 4
    return f"builds in {build:.0f} s; step {c * 1e3:.1f} ms vs {e * 1e3:.1f} ms eager (best of 5)"


def run_config(name: str, args, device: str, precision: str) -> dict[str, Any]:
    plan = make_plan(name, args, device, precision)
    size, batch = plan.input_size[0], plan.batch_size
    g = torch.Generator().manual_seed(0)
    (x, y), (xv, yv) = images(args.images, size, g), images(args.val_images, size, g)
    data = TrainData(x, y, xv, yv)
    # warm up both paths once (kernel selection, imports), then alternate
    warm = make_plan(name, args, device, precision, epochs=1)
    paired_epochs(warm, TrainData(x[:batch], y[:batch], xv[: batch // 4], yv[: batch // 4]))
    bare, ours, recoveries = [], [], 0
    for _ in range(args.repeats):
        b, s, r = paired_epochs(plan, data)
        bare, ours, recoveries = bare + b, ours + s, recoveries + r
    pairs = [1 - b[0] / s[0] for b, s in zip(bare, ours, strict=True)]
    step = min(b[0] for b in bare) / math.ceil(args.images / batch)  # fastest bare epoch
    row = {
        "name": name,
        "batch": batch,
        "bare": args.images / statistics.median(b[0] for b in bare),
        "scandx": args.images / statistics.median(s[0] for s in ours),
        "pairs": (statistics.median(pairs), min(pairs), max(pairs)),
        "cpu": statistics.median(1 - b[1] / s[1] for b, s in zip(bare, ours, strict=True)),
        "gflops": step_flops(plan) / step / 1e9,
        "step_ms": step * 1e3,
        "recoveries": recoveries,
    }
    if args.compile:
        row["compile"] = time_compile(plan, x, y)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"comma list of {list(CONFIGS)}")
    # default sizes are PneumoniaMNIST's train and val splits, so per-epoch costs
    # (validation, checkpoints) weigh what they weigh in a real run
    ap.add_argument("--images", type=int, default=4708)
    ap.add_argument("--val-images", type=int, default=None, help="default: as 524 to 4,708")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default=None, help="cpu or cuda (default: detected)")
    ap.add_argument("--precision", default=None, help="fp32, bf16 or fp16 (default: detected)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--batch", type=int, default=None, help="instead of the plan's 128")
    ap.add_argument("--contiguous", action="store_true", help="instead of channels_last")
    ap.add_argument("--compile", action="store_true", help="also time a torch.compile'd step")
    args = ap.parse_args()
    args.val_images = args.val_images or max(1, round(args.images * 524 / 4708))
    logging.basicConfig(level=logging.WARNING)
    unknown = [c for c in args.configs.split(",") if c not in CONFIGS]
    if unknown:
        ap.error(f"unknown configs {unknown}; choose from {list(CONFIGS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    device, precision = detect_device()
    if args.device and args.device != device:
        device = args.device
        precision = "bf16" if device == "cpu" and cpu_has_bf16() else "fp32"
    # what a run would use (e.g. no fp16 autocast on a CPU)
    device, precision = runtime_device(device, args.precision or precision)

    where = torch.cuda.get_device_name() if device.startswith("cuda") else cpu_model()
    bf16 = "native bf16" if cpu_has_bf16() else "no native bf16 (fp32 plans)"
    print(f"{where}, {torch.get_num_threads()} threads, {bf16}; torch {torch.__version__}")
    peaks = machine_peaks(device)
    print("matmul peak: " + ", ".join(f"{k} {v:,.0f} GFLOP/s" for k, v in peaks.items()))
    peak = peaks.get(precision, peaks["fp32"])

    print(
        f"\ndevice {device}, {precision}, {args.images} images x {args.epochs} epochs "
        f"(+{args.val_images} validated) x {args.repeats} repeats, paired epoch by epoch"
    )
    head = (
        f"{'config':<22} {'batch':>5} {'bare img/s':>10} {'scandx img/s':>12} "
        f"{'overhead (min..max)':>22} {'cpu clock':>9} {'step ms':>8} {'GFLOP/s':>7} {'% peak':>6}"
    )
    print(head + "\n" + "-" * len(head), flush=True)
    notes = []
    for name in args.configs.split(","):
        r = run_config(name, args, device, precision)
        med, lo, hi = r["pairs"]
        over = f"{med:.1%} ({lo:.1%}..{hi:.1%})"
        print(
            f"{r['name']:<22} {r['batch']:>5} {r['bare']:>10,.1f} {r['scandx']:>12,.1f} "
            f"{over:>22} {r['cpu']:>9.1%} {r['step_ms']:>8.1f} {r['gflops']:>7.1f} "
            f"{r['gflops'] / peak:>6.1%}",
            flush=True,
        )
        if r["recoveries"]:
            notes.append(f"note: {name}: fit() recovered {r['recoveries']} times (core/health.py)")
        if "compile" in r:
            notes.append(f"torch.compile, {name}: {r['compile']}")
    print("\n".join(notes))


if __name__ == "__main__":
    main()
