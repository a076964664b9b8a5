"""The long fuzz run: every fuzz target of tests/fuzz with many more cases, counted.

    .venv/bin/python benchmarks/fuzz.py [--examples 400] [--seed 0]

Runs the project's Hypothesis suite (tests/fuzz) with the ``long`` profile and a tally
file, so a traceback is counted and fuzzing goes on instead of stopping at the first.
Prints one row per target: cases tried, accepted (and checked), refused with one line
(exit 2 in the CLI), tracebacks (exit 1: must be 0) and wrong (accepted but failing its
check, or a multi-line error: must be 0), then each distinct traceback site.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=400, help="cases per fuzz test")
    ap.add_argument("--seed", type=int, default=0, help="Hypothesis seed")
    args = ap.parse_args()
    tally = Path(tempfile.mkdtemp(prefix="scandx-fuzz-")) / "tally.jsonl"
    env = {
        **os.environ,
        "SCANDX_FUZZ_PROFILE": "long",
        "SCANDX_FUZZ_TALLY": str(tally),
        "SCANDX_FUZZ_EXAMPLES": str(args.examples),
    }
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:warnings",
        "tests/fuzz",
        f"--hypothesis-seed={args.seed}",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    rows = [json.loads(line) for line in tally.read_text().splitlines()] if tally.exists() else []
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    sites: collections.Counter = collections.Counter()
    for r in rows:
        counts[r["target"]][r["outcome"]] += 1
        if r["outcome"] in ("traceback", "wrong"):
            sites[(r["target"], r["outcome"], r["detail"][:120])] += 1
    print(
        f"{'target':<18} {'cases':>6} {'accepted':>9} {'refused':>8} {'tracebacks':>11} "
        f"{'wrong':>6}"
    )
    total: collections.Counter = collections.Counter()
    for target in sorted(counts):
        c = counts[target]
        total.update(c)
        print(
            f"{target:<18} {sum(c.values()):>6} {c['accepted']:>9} {c['refused']:>8} "
            f"{c['traceback']:>11} {c['wrong']:>6}"
        )
    print(
        f"{'all':<18} {sum(total.values()):>6} {total['accepted']:>9} {total['refused']:>8} "
        f"{total['traceback']:>11} {total['wrong']:>6}   ({seconds:.0f} s, seed {args.seed})"
    )
    for (target, outcome, detail), n in sites.most_common():
        print(f"  {n:>4} x {target}: {outcome}: {detail}")
    if proc.returncode not in (0, 1):
        print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
    return 0 if total["traceback"] == total["wrong"] == 0 and rows else 1


if __name__ == "__main__":
    sys.exit(main())
