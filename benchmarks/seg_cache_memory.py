"""Segmentation training memory with the preprocessed cache (memory-mapped cases) vs the
old in-memory loading (SCANDX_CACHE=off), on synthetic volumes whose prepared total is
larger than a given memory cap; each mode in a fresh process.

    python benchmarks/seg_cache_memory.py [--cap-gb 1.0] [--shape 96 96 96] [--budget 30]

The data set (3D ellipsoids, NIfTI, Decathlon layout) has enough cases that its prepared
arrays (float32 image + label) exceed ``--cap-gb`` by half. Each mode trains it with
``scandx train`` (library call, ``--time-budget``) and reports the peak resident memory
(ru_maxrss: memory-mapped pages count here, though the OS can drop them) and the peak
anonymous resident memory (RssAnon of /proc/self/status, sampled every 20 ms: the memory
the process really holds), the wall time and the best validation Dice. Modes: "in memory"
(SCANDX_CACHE=off, every prepared case held), "cache, cold" (an empty cache: the first run
builds it), "cache, warm" (the second run).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_anon() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def child(data: str, out: str, budget: float) -> None:
    sys.path.insert(0, str(ROOT / "src"))
    from scandx.tasks.segmentation.workflow import seg_train_run

    peak = [rss_anon()]
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], rss_anon())

    threading.Thread(target=watch, daemon=True).start()
    t = time.perf_counter()
    summary = seg_train_run(data, out, time_budget_s=budget, seed=0)
    done.set()
    print(
        json.dumps(
            {
                "seconds": time.perf_counter() - t,
                "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "peak_anon": max(peak[0], rss_anon()),
                "val_dice": summary["best"].get("val_dice"),
                "epochs": summary["epochs_run"],
            }
        )
    )


def run_mode(data: Path, out: Path, budget: float, env: dict[str, str]) -> dict:
    cmd = [sys.executable, __file__, "--child", str(data), str(out), str(budget)]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env})
    if res.returncode:
        raise SystemExit(f"child failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], float(sys.argv[4]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cap-gb", type=float, default=1.0, help="memory the data must exceed")
    ap.add_argument("--shape", type=int, nargs=3, default=[96, 96, 96])
    ap.add_argument("--budget", type=float, default=30.0, help="training seconds per mode")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    sys.path.insert(0, str(ROOT))
    from benchmarks.machine import commit, cpu_model
    from scandx.tasks.segmentation.synthetic import make_ellipsoid_decathlon

    per_case = math.prod(args.shape) * (4 + 8)  # float32 image + int64 label, in memory
    n = max(4, math.ceil(1.5 * args.cap_gb * 1e9 / per_case))
    work = Path(tempfile.mkdtemp(prefix="scandx-segmem-"))
    try:
        data = make_ellipsoid_decathlon(
            work / "data", n_train=n, n_test=1, shape=tuple(args.shape), spacing=(1.0, 1.0, 1.0)
        )
        cache_env = {"SCANDX_CACHE_DIR": str(work / "cache"), "SCANDX_CACHE": "on"}
        rows = [
            (
                "in memory (SCANDX_CACHE=off)",
                run_mode(data, work / "r0", args.budget, {**cache_env, "SCANDX_CACHE": "off"}),
            ),
            ("cache, cold", run_mode(data, work / "r1", args.budget, cache_env)),
            ("cache, warm", run_mode(data, work / "r2", args.budget, cache_env)),
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    gb = n * per_case / 1e9
    print(
        f"\nSegmentation training memory: {n} cases of {args.shape} ({gb:.2f} GB prepared, "
        f"cap {args.cap_gb} GB), {args.budget:g} s budget each"
    )
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; commit {commit()}\n")
    print("| mode | peak RSS (GB) | peak RssAnon (GB) | seconds | epochs | val Dice |")
    print("|---|---|---|---|---|---|")
    for name, r in rows:
        dice = r["val_dice"]
        print(
            f"| {name} | {r['peak_rss'] / 1e9:.2f} | {r['peak_anon'] / 1e9:.2f} | "
            f"{r['seconds']:.0f} | {r['epochs']} | {dice if dice is None else f'{dice:.3f}'} |"
        )


if __name__ == "__main__":
    main()
