"""BraTS 2013 samples end to end in 3D with two MR channels: train on train/ (2 patients),
select on validation/ (2), report whole-tumour Dice on test/ (2), with the wall time.

    python benchmarks/brats.py --time-budget 600

The data set is tiny; the point is that 3D multi-channel segmentation works end to end
and that the number is measured, not that it is good.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from scandx.tasks.segmentation.evaluate import seg_evaluate_run
from scandx.tasks.segmentation.workflow import seg_train_run

SPEC = Path(__file__).resolve().parents[1] / "examples" / "brats2013.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--spec", default=str(SPEC))
    ap.add_argument("--time-budget", type=float, default=600)
    ap.add_argument("--out", help="run directory parent (default: a temporary one)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    run = Path(args.out or tempfile.mkdtemp(prefix="scandx-brats-")) / "run"
    t0 = time.perf_counter()
    summary = seg_train_run(args.spec, run, time_budget_s=args.time_budget)
    t_train = time.perf_counter() - t0
    m = seg_evaluate_run(run, args.spec, split="test", n_boot=200)
    wall = time.perf_counter() - t0
    wt = m["per_class"]["whole tumour"]
    print(f"\nBraTS 2013 samples, test split ({m['cases']} patients); run {run}")
    print(
        f"train {t_train:.0f}s (best epoch {summary['best']['epoch']}, val Dice "
        f"{summary['best']['val_dice']:.3f}), all {wall:.0f}s"
    )
    for case, per in m["per_case"].items():
        print(
            f"  {case}: whole-tumour Dice {per['whole tumour']['dice']:.3f}, "
            f"HD95 {per['whole tumour']['hd95']} mm"
        )
    print(
        f"whole-tumour Dice mean {wt['dice']['value']:.3f}; "
        f"mean Dice over the 4 tumour classes {m['dice']['value']:.3f}"
    )


if __name__ == "__main__":
    main()
