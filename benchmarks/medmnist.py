"""PneumoniaMNIST (or any 2D MedMNIST flag) with the automatic plan, against published rows.

    python benchmarks/medmnist.py --npz ../shared/data/medmnist/pneumoniamnist.npz --time-budget 600

No hand-set hyperparameters: scandx plans from the data and the time budget,
trains on train, selects the checkpoint and the operating threshold on val,
and touches test once, for the final number. Prints a table beside the
MedMNIST v2 published results (medmnist.com) and the wall time.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import tempfile
import time
from pathlib import Path

import torch

from scandx.tasks.classification import workflow

PUBLISHED = {  # PneumoniaMNIST test AUC / ACC, MedMNIST v2 (Yang et al., Scientific Data 2023)
    "ResNet-18 (28)": (0.944, 0.854),
    "ResNet-18 (224)": (0.956, 0.864),
    "ResNet-50 (28)": (0.948, 0.854),
    "ResNet-50 (224)": (0.962, 0.884),
    "auto-sklearn": (0.942, 0.855),
    "AutoKeras": (0.947, 0.878),
    "Google AutoML Vision": (0.991, 0.946),
}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--npz", required=True)
    ap.add_argument("--time-budget", type=float, default=600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="run directory (default: a temporary one)")
    ap.add_argument("--json", help="also write the result as JSON here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="scandx-medmnist-")) / "run"
    t0 = time.perf_counter()
    summary = workflow.train_run(args.npz, out, time_budget_s=args.time_budget, seed=args.seed)
    t_train = time.perf_counter() - t0
    metrics = workflow.evaluate_run(out, args.npz, split="test")
    wall = time.perf_counter() - t0
    plan = json.loads((out / "plan.json").read_text())

    auc, acc = metrics["auc"], metrics["accuracy"]
    print()
    print(f"{'model':<34} {'test AUC':>9} {'test ACC':>9}")
    print("-" * 54)
    for name, (a, c) in PUBLISHED.items():
        print(f"{name:<34} {a:>9.3f} {c:>9.3f}")
    label = f"scandx auto plan ({plan['model']} {plan['input_size'][0]}px)"
    print(f"{label:<34} {auc['value']:>9.3f} {acc['value']:>9.3f}")
    print(f"{'  95% CI (bootstrap)':<34} {_ci(auc):>9} {_ci(acc):>9}")
    print()
    print(
        f"wall time {wall:.0f}s (plan + train {t_train:.0f}s), {summary['epochs_run']} epochs, "
        f"best epoch {summary['best'].get('epoch', 0) + 1}, precision {plan['precision']}, "
        f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
    )
    print(f"threshold {metrics['threshold']['positive']:.3f} chosen on val; run directory {out}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "auc": auc,
                    "accuracy": acc,
                    "wall_s": wall,
                    "train_s": t_train,
                    "plan": plan["notes"],
                    "epochs_run": summary["epochs_run"],
                    "model": plan["model"],
                    "input_size": plan["input_size"],
                },
                indent=2,
            )
        )


def _ci(m: dict) -> str:
    lo, hi = m["ci95"]
    return f"{lo:.3f}-{hi:.3f}"


if __name__ == "__main__":
    main()
