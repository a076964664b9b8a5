"""DRIVE retinal vessels: train on training/ only, report test F1 (= Dice) and AUC inside
the field of view against 1st_manual, beside the published rows, with the wall time.

    python benchmarks/drive.py --data ../shared/data/drive --time-budget 900
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from scandx.tasks.segmentation.evaluate import seg_evaluate_run
from scandx.tasks.segmentation.workflow import seg_train_run

PUBLISHED = [  # F1, AUC inside the FOV (../shared/data/README.md)
    ("U-Net", 0.8142, 0.9755),
    ("R2U-Net", 0.8171, 0.9784),
    ("IterNet", 0.8205, 0.9816),
    ("SA-UNet", 0.8263, 0.9864),
    ("multiscale U-Net + positional attention (2021)", 0.8291, 0.9876),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default="../shared/data/drive")
    ap.add_argument("--time-budget", type=float, default=900)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="run directory (default: a temporary one)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    run = Path(args.out or tempfile.mkdtemp(prefix="scandx-drive-")) / "run"
    t0 = time.perf_counter()
    summary = seg_train_run(args.data, run, time_budget_s=args.time_budget, seed=args.seed)
    t_train = time.perf_counter() - t0
    m = seg_evaluate_run(run, args.data, split="test")
    wall = time.perf_counter() - t0
    f1, auc = m["dice"], m["auc"]
    print(f"\nDRIVE test (20 images), inside the FOV; run {run}")
    print(f"train {t_train:.0f}s (best epoch {summary['best']['epoch']}), all {wall:.0f}s")
    print(f"{'method':<50} {'F1':>7} {'AUC':>7}")
    for name, pf1, pauc in PUBLISHED:
        print(f"{name:<50} {pf1:>7.4f} {pauc:>7.4f}")
    lo, hi = f1["ci95"]
    print(
        f"{'scandx (this run)':<50} {f1['value']:>7.4f} {auc['value']:>7.4f}"
        f"   F1 95% CI {lo:.4f}-{hi:.4f}"
    )


if __name__ == "__main__":
    main()
