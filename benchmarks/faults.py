"""kill -9 at random (seeded) points of ``train``, ``evaluate`` and ``predict``, then check
what a user would see: no half-written output (every JSON parses, every JSONL line
parses, every CSV is whole, no visible ``*.tmp`` or partial folder, a model.json's weights
match its sha256), and that ``train --resume`` / a rerun of evaluate or predict succeeds.

    python benchmarks/faults.py                 # 20 kills per command
    python benchmarks/faults.py --kills 3       # what tests/core/test_faults.py runs

Prints one table row per command: kills, corrupted outputs, reruns succeeded.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")


def scandx(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC}
    cmd = [sys.executable, "-m", "scandx", "-q", *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def run(*args: str) -> tuple[int, float, str]:
    t0 = time.perf_counter()
    proc = scandx(*args)
    _, err = proc.communicate()
    return proc.returncode, time.perf_counter() - t0, err.decode()


def killed(args: list[str], after_s: float) -> None:
    proc = scandx(*args)
    try:
        proc.wait(timeout=after_s)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def problems(folder: Path) -> list[str]:
    """What is half-written or corrupt among the visible files under ``folder``."""
    found: list[str] = []
    if not folder.exists():
        return found
    for p in folder.rglob("*"):
        rel = p.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue  # hidden temporaries: never read as results, cleared by the next run
        if p.name.endswith((".tmp", ".partial")):
            found.append(f"{rel}: leftover")
        elif not p.is_file():
            continue
        elif p.suffix == ".json":
            try:
                info = json.loads(p.read_text())
            except ValueError:
                found.append(f"{rel}: JSON does not parse")
                continue
            if p.name == "model.json" and isinstance(info, dict) and "sha256" in info:
                weights = p.parent / str(info.get("weights", ""))
                digest = (
                    hashlib.sha256(weights.read_bytes()).hexdigest() if weights.is_file() else ""
                )
                if digest != info["sha256"]:
                    found.append(f"{rel}: weights missing or not matching sha256")
        elif p.suffix == ".jsonl":
            for line in p.read_text().splitlines():
                try:
                    json.loads(line)
                except ValueError:
                    found.append(f"{rel}: a line does not parse")
                    break
        elif p.suffix == ".csv":
            text = p.read_text()
            rows = list(csv.reader(text.splitlines()))
            if not text.endswith("\n") or not rows or any(len(r) != len(rows[0]) for r in rows):
                found.append(f"{rel}: CSV incomplete")
    for split in (folder / "eval").glob("*") if (folder / "eval").is_dir() else []:
        if not split.name.startswith(".") and not (split / "report.html").exists():
            found.append(f"eval/{split.name}: incomplete evaluation")
    return found


def faults(kills: int, seed: int, work: Path) -> list[dict]:
    from scandx.tasks.classification.data.synthetic import make_phantom_dataset

    rng = random.Random(seed)
    data = make_phantom_dataset(work / "data", n_patients=24, size=32, seed=seed)
    train = ["--data", str(data), "--model", "simple-cnn", "--time-budget", "3"]
    base = work / "base"
    rc, train_s, err = run("train", "--out", str(base), *train)
    assert rc == 0, err
    evaluate = ["evaluate", str(base), "--data", str(data), "--bootstrap", "50", "--gallery", "0"]
    rc, eval_s, err = run(*evaluate)
    assert rc == 0, err
    images = sorted(str(p) for p in data.rglob("*.png"))[:8]
    pred_out = work / "pred"
    predict = ["predict", str(base), *images, "--out", str(pred_out)]
    rc, pred_s, err = run(*predict)
    assert rc == 0, err
    rows = []
    for name, seconds in (("train", train_s), ("evaluate", eval_s), ("predict", pred_s)):
        corrupted, rerun_ok = 0, 0
        for i in range(kills):
            after = rng.uniform(0.05, 1.0) * seconds
            if name == "train":
                out = work / f"train{i}"
                killed(["train", "--out", str(out), *train], after)
                corrupted += bool(problems(out))
                resume = ["--resume"] if (out / "plan.json").exists() else []
                rc, _, err = run("train", "--out", str(out), *train, *resume)
                ok = rc == 0 and (out / "model" / "model.json").exists() and not problems(out)
            elif name == "evaluate":
                killed(evaluate, after)
                corrupted += bool(problems(base))
                rc, _, err = run(*evaluate)
                ok = rc == 0 and not problems(base)
            else:
                killed(predict, after)
                corrupted += bool(problems(pred_out))
                rc, _, err = run(*predict)
                ok = rc == 0 and not problems(pred_out)
            rerun_ok += ok
            if not ok:
                print(f"{name} kill {i} at {after:.1f}s: rerun failed: {err.strip()[-300:]}")
        rows.append(
            {"command": name, "kills": kills, "corrupted": corrupted, "reruns_ok": rerun_ok}
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sys.path.insert(0, SRC)
    work = Path(tempfile.mkdtemp(prefix="scandx-faults-"))
    t0 = time.perf_counter()
    try:
        rows = faults(args.kills, args.seed, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'command':<10} {'kills':>5} {'corrupted outputs':>18} {'reruns succeeded':>17}")
    for r in rows:
        print(f"{r['command']:<10} {r['kills']:>5} {r['corrupted']:>18} {r['reruns_ok']:>17}")
    print(f"({time.perf_counter() - t0:.0f} s, seed {args.seed})")


if __name__ == "__main__":
    main()
