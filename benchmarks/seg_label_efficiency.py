"""Scarce label maps on DRIVE (issue 15): a segmenter trained on a fraction of the
training label maps, supervised only vs pretrained (mae on every training image, labels
ignored) + fine-tuned, at the same total wall-clock budget.

    python benchmarks/seg_label_efficiency.py --fraction 0.3 --budget 300 --pretrain-budget 100

Per seed s (the validation draw is the same in both arms: 4 of the 20 training images):

(a) supervised only: ``scandx train --labelled-fraction F --time-budget T``;
(b) ``scandx pretrain --method mae --time-budget Tp`` (the other 16 training images,
    labels ignored), then ``scandx train --init P --labelled-fraction F --time-budget
    T-Tp`` (the same labelled images as (a)).

Both are scored by ``scandx evaluate RUN --split test`` on DRIVE's 20 test images (F1 =
Dice and pixel AUC inside the field of view); the table gives mean ± sd over seeds and
whether the difference exceeds the seeds' spread. Figures need a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from label_efficiency import _beside, mean_sd, scandx  # noqa: E402
from machine import commit, cpu_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DRIVE = ROOT / ".." / "shared" / "data" / "drive"
ARMS = ("supervised", "pretrained (mae) + fine-tuned")


def test_scores(run: Path, data: Path) -> tuple[float, float]:
    metrics = run / "eval" / "test" / "metrics.json"
    if not metrics.exists():
        scandx("evaluate", str(run), "--data", str(data), "--split", "test", "--gallery", "0",
               log=_beside(run, ".eval.log"))  # fmt: skip
    m = json.loads(metrics.read_text())
    return float(m["dice"]["value"]), float(m["auc"]["value"])


def train(data: Path, run: Path, f: float, seed: int, budget: float, *init: str) -> None:
    if not (run / "model").exists():
        scandx("train", "--data", str(data), "--out", str(run), "--labelled-fraction", f"{f:g}",
               "--time-budget", f"{budget:g}", "--seed", str(seed), *init,
               log=_beside(run, ".train.log"))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", default=str(DRIVE))
    ap.add_argument("--fraction", type=float, default=0.3, help="of the training label maps")
    ap.add_argument("--budget", type=float, default=300, help="T: seconds per arm in all")
    ap.add_argument("--pretrain-budget", type=float, default=100, help="Tp, charged to (b)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", required=True, help="work folder (runs are reused when present)")
    args = ap.parse_args()
    if args.pretrain_budget >= args.budget:
        raise SystemExit("--pretrain-budget must be below --budget (both arms get the budget)")
    data, work = Path(args.data).resolve(), Path(args.out).resolve()
    if not data.exists():
        raise SystemExit(f"{data}: DRIVE not found")
    work.mkdir(parents=True, exist_ok=True)
    seeds = [int(v) for v in args.seeds.split(",")]
    f, t0 = args.fraction, time.perf_counter()
    scores: dict[str, list[tuple[float, float]]] = {arm: [] for arm in ARMS}
    for seed in seeds:
        sup = work / f"supervised_s{seed}"
        train(data, sup, f, seed, args.budget)
        scores[ARMS[0]].append(test_scores(sup, data))
        pre = work / f"pretrain_s{seed}"
        if not (pre / "model" / "encoder.safetensors").exists():
            scandx("pretrain", "--data", str(data), "--out", str(pre), "--method", "mae",
                   "--time-budget", f"{args.pretrain_budget:g}", "--seed", str(seed),
                   log=_beside(pre, ".log"))  # fmt: skip
        tuned = work / f"tuned_s{seed}"
        train(data, tuned, f, seed, args.budget - args.pretrain_budget, "--init", str(pre))
        scores[ARMS[1]].append(test_scores(tuned, data))
        print(f"seed {seed}: F1 supervised {scores[ARMS[0]][-1][0]:.4f}, pretrained "
              f"{scores[ARMS[1]][-1][0]:.4f}", flush=True)  # fmt: skip
    kept = json.loads((work / f"supervised_s{seeds[0]}" / "plan.json").read_text())["notes"]
    print(f"\nDRIVE test (20 images, inside the FOV), {f:.0%} of the training label maps; "
          f"T = {args.budget:g}s per arm (b: pretraining {args.pretrain_budget:g}s + "
          f"fine-tuning {args.budget - args.pretrain_budget:g}s); seeds {seeds}; wall "
          f"{time.perf_counter() - t0:.0f}s; commit {commit()}; {cpu_model()}")  # fmt: skip
    print(next((n for n in kept if n.startswith("labelled fraction")), ""))
    print(f"{'arm':<32} | {'F1 mean ± sd':>16} | {'AUC mean ± sd':>16}")
    for arm in ARMS:
        (mf, sf), (ma, sa) = (mean_sd([s[k] for s in scores[arm]]) for k in (0, 1))
        print(f"{arm:<32} | {mf:.4f} ± {sf:.4f} | {ma:.4f} ± {sa:.4f}")
    (ma_, sa_), (mb, sb) = (mean_sd([s[0] for s in scores[a]]) for a in ARMS)
    beats = "-" if len(seeds) < 2 else "yes" if abs(mb - ma_) > max(sa_, sb) else "no"
    print(f"F1 difference (b) - (a): {mb - ma_:+.4f}; beyond the seeds' spread: {beats}")
    walls = {p.stem: float(p.read_text()) for p in sorted(work.glob("*.wall"))}
    (work / "results.json").write_text(json.dumps({"scores": scores, "walls_s": walls}, indent=1))


if __name__ == "__main__":
    main()
