"""Does ``scandx train --time-budget S`` end in time on a 3D data set of many volumes?

    python benchmarks/seg_budget.py [--cases 142] [--shape 96 96 96] [--budgets 120 300]
        [--baseline-src DIR]

Synthetic 3D ellipsoids (NIfTI, Decathlon layout; 20% of the cases validate). For each
budget the whole command is timed as a user runs it (``python -m scandx train --data D
--out R --time-budget S`` in a fresh process, an empty preprocessed cache: planning,
reading and caching the cases, training, the post-training choice and saving), with
this checkout's ``src/`` and, with ``--baseline-src``, another checkout's (a git worktree
of an earlier commit: the peer in the same run). The table gives the wall time against
the budget (the promise: within 10%), the epochs run, the validation cases used and the
best validation Dice.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def train(src: Path, data: Path, out: Path, budget: float, cache: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "SCANDX_CACHE_DIR": str(cache)}
    cmd = [sys.executable, "-m", "scandx", "-q", "train", "--data", str(data), "--out"]
    cmd += [str(out), "--time-budget", f"{budget:g}", "--seed", "0"]
    t = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if res.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
    summary = json.loads((out / "train_summary.json").read_text())
    plan = json.loads((out / "plan.json").read_text())
    with open(out / "manifest.csv", newline="") as f:
        n_val = sum(row["split"] == "val" for row in csv.DictReader(f))
    return {
        "wall": wall,
        "epochs": f"{summary['epochs_run']}/{plan['epochs']}",
        "val": f"{plan.get('val_cases') or n_val} of {n_val}",
        "dice": summary["best"].get("val_dice"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=142)
    ap.add_argument("--shape", type=int, nargs=3, default=[96, 96, 96])
    ap.add_argument("--budgets", type=float, nargs="+", default=[120.0, 300.0])
    ap.add_argument("--baseline-src", type=Path, help="another checkout's src/ to compare")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    sys.path.insert(0, str(ROOT))
    from benchmarks.machine import commit, cpu_model
    from scandx.tasks.segmentation.synthetic import make_ellipsoid_decathlon

    trees = [("this checkout", ROOT / "src")]
    if args.baseline_src:
        trees.append((f"baseline {args.baseline_src}", args.baseline_src.resolve()))
    work = Path(tempfile.mkdtemp(prefix="scandx-segbudget-"))
    rows = []
    try:
        data = make_ellipsoid_decathlon(
            work / "data", n_train=args.cases, n_test=1, shape=tuple(args.shape),
            spacing=(1.0, 1.0, 1.0),
        )  # fmt: skip
        for budget in args.budgets:
            for k, (name, src) in enumerate(trees):
                out, cache = work / f"run-{budget:g}-{k}", work / f"cache-{budget:g}-{k}"
                rows.append((budget, name, train(src, data, out, budget, cache)))
                print(rows[-1], flush=True)
                shutil.rmtree(cache, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n`scandx train` on {args.cases} synthetic 3D cases of {args.shape}")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; commit {commit()}\n")
    print("| budget (s) | code | wall (s) | wall / budget | epochs | validation cases | val Dice |")
    print("|---|---|---|---|---|---|---|")
    for budget, name, r in rows:
        dice = "-" if r["dice"] is None else f"{r['dice']:.3f}"
        print(
            f"| {budget:g} | {name} | {r['wall']:.0f} | {r['wall'] / budget:.2f} | "
            f"{r['epochs']} | {r['val']} | {dice} |"
        )


if __name__ == "__main__":
    main()
