"""DDP on the CPU: training images (patches) per second with 1 and 2 processes for each
task, and the time each takes to reach the same validation metric.

    python benchmarks/ddp.py                          # both tasks, 1 and 2 processes
    python benchmarks/ddp.py --task segmentation --nproc 1,2,4
    python benchmarks/ddp.py --tiny                   # a smoke run (seconds), no figures

Each run is the real command, ``scandx train`` (``--nproc N`` for N > 1: torchrun's
launcher, gloo, ``cpus // N`` threads per rank; one process uses every CPU), on
synthetic data made here, with one plan for all runs of a task (fixed epochs, batch and
steps, no early stopping, no time budget), so the runs differ only in the processes:

- classification: a MedMNIST-style .npz of 28 px noise images, the positive class marked
  by a faint square (validation AUC about 0.95 after a few epochs), ``--images``
  training images; simple-cnn unless ``--model``;
- segmentation: 2D ellipse folders (``tasks/segmentation/synthetic.py``), ``--cases``
  cases of ``--size`` px, the planned U-Net, validated every other epoch.

Printed per task and process count: training images (classification) or patches
(segmentation) per second over the median epoch (the slowest rank's epoch time, which
includes validation when the epoch is validated); the command's wall time (start-up,
data loading and the post-training steps included); the best validation metric; and
the training seconds (sum of the epochs, from log.jsonl) until the first validation at
or above the target: the lowest best metric of the task's runs, so every run reaches
it. Run it on a quiet machine: other load moves the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import ROOT, commit, cpu_model  # noqa: E402

METRIC = {"classification": "val_auc", "segmentation": "val_dice"}


def make_classification(folder: Path, images: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", images), ("val", max(60, images // 4)), ("test", 20)):
        y = rng.integers(0, 2, (n, 1)).astype(np.uint8)
        x = rng.integers(0, 120, (n, 28, 28)).astype(np.uint8)
        x[y[:, 0] == 1, 4:12, 4:12] += 12
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = x, y
    path = folder / "toymnist.npz"
    np.savez(path, **arrays)
    return path


def plan_classification(data: Path, folder: Path, args: argparse.Namespace) -> tuple[Path, int]:
    from scandx.tasks.classification.workflow import plan_run

    plan = plan_run(data, time_budget_s=600, model=args.model, seed=0)
    plan.epochs, plan.early_stopping_patience, plan.warmup_epochs = args.epochs, 1000, 1
    plan.time_budget_s = None
    path = folder / "plan.json"
    plan.save(path)
    return path, args.images  # training images per epoch


def plan_segmentation(data: Path, folder: Path, args: argparse.Namespace) -> tuple[Path, int]:
    from scandx.tasks.segmentation.workflow import seg_plan_run

    plan = seg_plan_run(data, time_budget_s=600, seed=0)
    plan.epochs, plan.steps_per_epoch, plan.val_every = args.epochs, args.steps, 2
    plan.time_budget_s = None
    path = folder / "plan.json"
    plan.save(path)
    return path, plan.steps_per_epoch * plan.batch_size  # patches per epoch


def train(data: Path, plan: Path, out: Path, nproc: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    env.pop("OMP_NUM_THREADS", None)  # one process: every CPU; N: the launcher shares them
    cmd = [sys.executable, "-m", "scandx", "-q", "train", "--data", str(data)]
    cmd += ["--plan", str(plan), "--out", str(out)] + (["--nproc", str(nproc)] if nproc > 1 else [])
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - t0


def seconds_to(log: list[dict], metric: str, target: float) -> float | None:
    spent = 0.0
    for r in log:
        spent += r["seconds"]
        if r.get(metric) is not None and r[metric] >= target:
            return spent
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", choices=("classification", "segmentation", "both"), default="both")
    p.add_argument("--nproc", default="1,2", help="process counts, comma-separated")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--images", type=int, default=4000, help="classification training images")
    p.add_argument("--model", default="simple-cnn")
    p.add_argument("--cases", type=int, default=24, help="segmentation cases")
    p.add_argument("--size", type=int, default=96, help="segmentation image size (px)")
    p.add_argument("--steps", type=int, default=50, help="segmentation steps per epoch")
    p.add_argument("--tiny", action="store_true", help="a smoke run: tiny sizes, 2 epochs")
    args = p.parse_args()
    if args.tiny:
        args.epochs, args.images, args.cases, args.size, args.steps = 2, 120, 8, 32, 4
    counts = [int(n) for n in args.nproc.split(",")]
    tasks = ["classification", "segmentation"] if args.task == "both" else [args.task]
    print(f"DDP on the CPU: {cpu_model()}, {os.cpu_count()} CPUs; commit {commit()}")
    if args.tiny:
        print("(--tiny: a smoke run; the figures mean nothing)")
    with tempfile.TemporaryDirectory() as tmp:
        for task in tasks:
            folder = Path(tmp) / task
            folder.mkdir()
            if task == "classification":
                data = make_classification(folder, args.images)
                plan, per_epoch = plan_classification(data, folder, args)
            else:
                from scandx.tasks.segmentation.synthetic import make_ellipse_folders

                data = make_ellipse_folders(folder / "data", n=args.cases, size=args.size)
                plan, per_epoch = plan_segmentation(data, folder, args)
            rows = []
            for n in counts:
                out = folder / f"run{n}"
                wall = train(data, plan, out, n)
                log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
                best = max(r[METRIC[task]] for r in log if r.get(METRIC[task]) is not None)
                rows.append((n, wall, log, best))
            target = min(r[3] for r in rows)
            unit = "images/s" if task == "classification" else "patches/s"
            print(f"\n{task} ({per_epoch} {unit.split('/')[0]} per epoch, {args.epochs} epochs)")
            print(f"  {'procs':>5} {unit:>10} {'wall s':>8} {'best ' + METRIC[task]:>14} "
                  f"{'s to ' + f'{target:.3f}':>10}")  # fmt: skip
            for n, wall, log, best in rows:
                rate = per_epoch / statistics.median(r["seconds"] for r in log)
                reach = seconds_to(log, METRIC[task], target)
                reach_txt = f"{reach:.1f}" if reach is not None else "n/a"
                print(f"  {n:>5} {rate:>10.1f} {wall:>8.1f} {best:>14.4f} {reach_txt:>10}")


if __name__ == "__main__":
    main()
