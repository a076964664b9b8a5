"""Label efficiency on PneumoniaMNIST (issue 15): test AUC with a fraction of the training
labels, supervised only vs pretrained + semi-supervised at the same total wall-clock.

    python benchmarks/label_efficiency.py --budget 600 --pretrain-budget 200

For each seed and fraction F (patient-level, stratified, seeded by the plan's seed):

(a) supervised only: ``scandx train --labelled-fraction F --semi-supervised off
    --time-budget T``;
(b) pretrained + semi-supervised: ``scandx pretrain --method simclr --time-budget Tp``
    once per seed (on every training image, no labels), then ``scandx train --init P
    --labelled-fraction F --time-budget T-Tp`` (semi-supervised is on by default: the
    other training images are unlabelled). The pretraining run is shared by the
    fractions of its seed, and its budget Tp is charged to every arm (b) run: each
    arm's total is T.

Every run is scored by ``scandx evaluate RUN --split test`` (the MedMNIST test split,
untouched by any fraction); the table gives mean ± sd of the test AUC over seeds, the
difference (b) - (a) and whether it exceeds the seeds' spread (the larger sd of the
two arms); the SVG plot (AUC vs fraction, log x, error bars = sd) is hand-written.
Arm (b) is skipped, saying so, when ``scandx pretrain`` is not available. Figures need
a quiet machine: other processes change what a time budget buys.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NPZ = ROOT / ".." / "shared" / "data" / "medmnist" / "pneumoniamnist.npz"
ARMS = ("supervised", "pretrained+semi")


WALL: dict[str, float] = {}  # run folder -> seconds its scandx command took, end to end


def scandx(*args: str, log: Path) -> None:
    """Run one scandx command (its output to ``log``); a failure ends the benchmark. The
    wall-clock seconds of plan+train commands are kept in ``WALL`` (and beside the log)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log, "w") as out:
        rc = subprocess.call([sys.executable, "-m", "scandx", *args], stdout=out, stderr=out)
    if args[0] in ("train", "pretrain"):
        out_dir = args[args.index("--out") + 1]
        WALL[out_dir] = time.perf_counter() - t0
        Path(out_dir + ".wall").write_text(f"{WALL[out_dir]:.1f}\n")
    if rc != 0:
        tail = log.read_text().splitlines()[-5:]
        raise SystemExit(f"scandx {args[0]} failed (exit {rc}); see {log}:\n" + "\n".join(tail))


def has_pretrain() -> bool:
    probe = subprocess.run(
        [sys.executable, "-m", "scandx", "pretrain", "--help"], capture_output=True, text=True
    )
    return probe.returncode == 0


def test_auc(run: Path, data: Path, log: Path) -> float:
    metrics = run / "eval" / "test" / "metrics.json"
    if not metrics.exists():
        scandx("evaluate", str(run), "--data", str(data), "--split", "test",
               "--gallery", "0", "--bootstrap", "200", log=log)  # fmt: skip
    return float(json.loads(metrics.read_text())["auc"]["value"])


def supervised(data: Path, work: Path, f: float, seed: int, budget: float) -> float:
    run = work / f"supervised_f{f:g}_s{seed}"
    if not (run / "model").exists():
        scandx("train", "--data", str(data), "--out", str(run), "--labelled-fraction", f"{f:g}",
               "--semi-supervised", "off", "--time-budget", f"{budget:g}", "--seed", str(seed),
               log=_beside(run, ".train.log"))  # fmt: skip
    return test_auc(run, data, _beside(run, ".eval.log"))


def pretrained_semi(
    data: Path, work: Path, f: float, seed: int, budget: float, pretrain_budget: float
) -> float:
    pre = work / f"pretrain_s{seed}"  # shared by the fractions of this seed
    if not (pre / "model" / "encoder.safetensors").exists():
        scandx("pretrain", "--data", str(data), "--out", str(pre), "--method", "simclr",
               "--time-budget", f"{pretrain_budget:g}", "--seed", str(seed),
               log=_beside(pre, ".log"))  # fmt: skip
    run = work / f"semi_f{f:g}_s{seed}"
    if not (run / "model").exists():
        scandx("train", "--data", str(data), "--out", str(run), "--init", str(pre),
               "--labelled-fraction", f"{f:g}", "--time-budget", f"{budget - pretrain_budget:g}",
               "--seed", str(seed), log=_beside(run, ".train.log"))  # fmt: skip
    return test_auc(run, data, _beside(run, ".eval.log"))


def _beside(run: Path, suffix: str) -> Path:
    """RUN's log file: ``run.name + suffix`` (``with_suffix`` would eat "0.01_s0")."""
    return run.parent / (run.name + suffix)


def mean_sd(values: list[float]) -> tuple[float, float]:
    m = sum(values) / len(values)
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0
    return m, sd


def table(results: dict[str, dict[float, list[float]]], fractions: list[float]) -> str:
    head = (
        f"{'labels':>7} | {'supervised':>15} | {'pretrained+semi':>15} | {'diff':>7} | beats spread"
    )
    lines = [head, "-" * len(head)]
    for f in fractions:
        cells, stats = [], {}
        for arm in ARMS:
            vals = results.get(arm, {}).get(f)
            if vals:
                stats[arm] = mean_sd(vals)
                cells.append(f"{stats[arm][0]:.4f} ± {stats[arm][1]:.4f}")
            else:
                cells.append("skipped")
        if len(stats) == 2:
            (ma, sa), (mb, sb) = stats[ARMS[0]], stats[ARMS[1]]
            diff, beats = f"{mb - ma:+.4f}", "yes" if abs(mb - ma) > max(sa, sb) else "no"
        else:
            diff, beats = "-", "-"
        lines.append(f"{f:>7.0%} | {cells[0]:>15} | {cells[1]:>15} | {diff:>7} | {beats}")
    return "\n".join(lines)


def svg_plot(results: dict[str, dict[float, list[float]]], fractions: list[float]) -> str:
    """AUC vs fraction (log x), one line per arm, error bars of ± sd; plain SVG."""
    w, h, left, right, top, bottom = 560, 360, 60, 150, 20, 50
    points = [v for arm in results.values() for vals in arm.values() for v in vals]
    lo = min(points + [0.9]) - 0.01
    hi = min(1.0, max(points + [0.9]) + 0.01)
    fx = [math.log10(f) for f in fractions]
    x0, x1 = min(fx) - 0.15, max(fx) + 0.15

    def x(f: float) -> float:
        return left + (math.log10(f) - x0) / (x1 - x0) * (w - left - right)

    def y(v: float) -> float:
        return top + (hi - v) / (hi - lo) * (h - top - bottom)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
        f'<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" stroke="black"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" stroke="black"/>',
        f'<text x="{(left + w - right) / 2}" y="{h - 12}" text-anchor="middle">'
        "training labels (log scale)</text>",
        f'<text x="14" y="{(top + h - bottom) / 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {(top + h - bottom) / 2})">test AUC</text>',
    ]
    for f in fractions:
        out.append(
            f'<text x="{x(f):.1f}" y="{h - bottom + 16}" text-anchor="middle">{f:.0%}</text>'
        )
    steps = 5
    for i in range(steps + 1):
        v = lo + (hi - lo) * i / steps
        out.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.3f}</text>')
        out.append(f'<line x1="{left}" y1="{y(v):.1f}" x2="{w - right}" y2="{y(v):.1f}" '
                   'stroke="#ddd"/>')  # fmt: skip
    colours = {ARMS[0]: "#1f77b4", ARMS[1]: "#d62728"}
    for k, arm in enumerate(ARMS):
        runs = results.get(arm, {})
        pts = [(f, *mean_sd(runs[f])) for f in fractions if runs.get(f)]
        if not pts:
            continue
        c = colours[arm]
        path = " ".join(f"{x(f):.1f},{y(m):.1f}" for f, m, _ in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{c}" stroke-width="2"/>')
        for f, m, sd in pts:
            out.append(f'<line x1="{x(f):.1f}" y1="{y(m - sd):.1f}" x2="{x(f):.1f}" '
                       f'y2="{y(m + sd):.1f}" stroke="{c}"/>')  # fmt: skip
            out.append(f'<circle cx="{x(f):.1f}" cy="{y(m):.1f}" r="3" fill="{c}"/>')
        ly = top + 10 + 18 * k
        out.append(f'<line x1="{w - right + 10}" y1="{ly}" x2="{w - right + 30}" y2="{ly}" '
                   f'stroke="{c}" stroke-width="2"/>')  # fmt: skip
        out.append(f'<text x="{w - right + 34}" y="{ly + 4}">{arm}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", default=str(NPZ), help="PneumoniaMNIST .npz")
    ap.add_argument("--budget", type=float, default=600, help="T: seconds per arm in all")
    ap.add_argument("--pretrain-budget", type=float, default=200, help="Tp, charged to arm (b)")
    ap.add_argument("--fractions", default="0.01,0.05,0.1,1")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default=None, help="work folder (runs are reused when present)")
    ap.add_argument("--plot", default=str(ROOT / "docs" / "figures" / "label_efficiency.svg"))
    args = ap.parse_args()
    if args.pretrain_budget >= args.budget:
        raise SystemExit("--pretrain-budget must be below --budget (both arms get the budget)")
    data = Path(args.data).resolve()
    if not data.exists():
        raise SystemExit(f"{data}: PneumoniaMNIST not found")
    fractions = [float(v) for v in args.fractions.split(",")]
    seeds = [int(v) for v in args.seeds.split(",")]
    work = Path(args.out or f"label_efficiency_{os.getpid()}").resolve()
    work.mkdir(parents=True, exist_ok=True)
    with_b = has_pretrain()
    if not with_b:
        print("arm (b) skipped: `scandx pretrain` is not available in this installation")
    results: dict[str, dict[float, list[float]]] = {arm: {} for arm in ARMS}
    t0 = time.perf_counter()
    for seed in seeds:
        for f in fractions:
            auc = supervised(data, work, f, seed, args.budget)
            results[ARMS[0]].setdefault(f, []).append(auc)
            print(f"seed {seed} labels {f:.0%}: supervised test AUC {auc:.4f}", flush=True)
            if with_b:
                auc = pretrained_semi(data, work, f, seed, args.budget, args.pretrain_budget)
                results[ARMS[1]].setdefault(f, []).append(auc)
                print(f"seed {seed} labels {f:.0%}: pretrained+semi test AUC {auc:.4f}", flush=True)
    print(f"\nPneumoniaMNIST test AUC, mean ± sd over seeds {seeds}; T = {args.budget:g}s per "
          f"arm (arm b: pretraining {args.pretrain_budget:g}s, shared by the fractions of a "
          f"seed and charged to each, + training {args.budget - args.pretrain_budget:g}s); "
          f"wall {time.perf_counter() - t0:.0f}s; work {work}")  # fmt: skip
    print(table(results, fractions))
    walls = {p.stem: float(p.read_text()) for p in sorted(work.glob("*.wall"))}
    for arm, prefix in (("supervised", "supervised_"), ("pretrained+semi", "semi_")):
        runs = [v for k, v in walls.items() if k.startswith(prefix)]
        pre = [v for k, v in walls.items() if k.startswith("pretrain_")]
        if runs:
            extra = sum(pre) / len(pre) if pre and prefix == "semi_" else 0.0
            print(f"measured wall per {arm} run (train command, end to end"
                  f"{' + its seed pretraining' if extra else ''}): "
                  f"{sum(runs) / len(runs) + extra:.0f}s mean")  # fmt: skip
    for arm in ARMS:
        five, hundred = results[arm].get(0.05), results[ARMS[0]].get(1.0)
        if five and hundred:
            gap = mean_sd(hundred)[0] - mean_sd(five)[0]
            print(f"{arm} at 5% vs supervised at 100%: {gap:+.4f} AUC below (target <= 0.02)")
    saved = {a: {str(f): v for f, v in r.items()} for a, r in results.items()}
    saved["walls_s"] = walls  # type: ignore[assignment]
    (work / "results.json").write_text(json.dumps(saved, indent=1))
    plot = Path(args.plot)
    plot.parent.mkdir(parents=True, exist_ok=True)
    plot.write_text(svg_plot(results, fractions))
    print(f"plot: {plot}")


if __name__ == "__main__":
    main()
