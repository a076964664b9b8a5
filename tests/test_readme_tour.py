"""The README's five-minute tour, run as written (on ../shared/data), so it cannot rot.

Each ``scandx`` / shell line of the tour's bash blocks runs in order in one bash
script, in a scratch folder laid out like a checkout (``examples/`` and ``../shared``
beside it), with the venv's ``scandx`` on PATH. Only the time budgets are shortened
(``--time-budget`` -> a few seconds, and added to ``train`` lines that plan without
one), and ``make demo`` is stood in for by ``scandx demo`` with a short budget; the
browser line is checked by the file it opens. Then the files the tour promises exist.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, SHARED, needs_shared

BUDGET = "6"


def tour_lines(readme: str) -> list[str]:
    tour = readme.split("## Five-minute tour", 1)[1].split("\n## ", 1)[0]
    return bash_lines(tour)


def bash_lines(text: str) -> list[str]:
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        block = re.sub(r"\\\n\s*", " ", block)  # a command continued with a backslash
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("source "):
                lines.append(line)
    return lines


def runnable(line: str) -> str:
    if line.startswith("python -m webbrowser"):
        return f"test -s {line.split()[-1]}"  # the page the browser would open
    line = re.sub(r"--time-budget \d+", f"--time-budget {BUDGET}", line)
    if line.startswith("scandx train") and "--time-budget" not in line and "--plan" not in line:
        line += f" --time-budget {BUDGET}"
    return line


def test_tour_lines_are_found_and_cover_both_tasks():
    lines = tour_lines((ROOT / "README.md").read_text())
    text = "\n".join(lines)
    for cmd in ("scandx plan", "scandx train", "scandx evaluate", "scandx predict"):
        assert cmd in text
    assert "scandx explain" in text and "drive" in text


def test_every_scandx_line_of_the_readme_parses():
    """Lines outside the tour (e.g. the 3D BraTS runs, minutes each) are not run here
    (benchmarks/brats.py runs them); their commands and flags must still exist."""
    from scandx.cli import _parser

    lines = [x for x in bash_lines((ROOT / "README.md").read_text()) if x.startswith("scandx ")]
    assert any("brats2013" in x for x in lines)
    for line in lines:
        line = re.sub(r"\[(--[^\]]*)\]", r"\1", line)  # [--optional flags] checked too
        args = ["X" if a.startswith("$") else a for a in shlex.split(line)[1:]]
        _parser().parse_args(args)  # SystemExit (test failure) on an unknown flag


@needs_shared
@pytest.mark.timeout(900)
def test_readme_tour_runs_as_written(tmp_path):
    work = tmp_path / "checkout"
    work.mkdir()
    (work / "examples").symlink_to(ROOT / "examples")
    (tmp_path / "shared").symlink_to(SHARED.parent)
    script = ["set -euo pipefail", f"scandx -q demo --out demo-run --time-budget {BUDGET}"]
    script += [runnable(line) for line in tour_lines((ROOT / "README.md").read_text())]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    r = subprocess.run(
        ["bash", "-c", "\n".join(script)], cwd=work, env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr[-3000:]
    for path in (
        "runs/pneu/plan.json",
        "runs/pneu/eval/test/report.html",
        "preds/predictions.csv",
        "explain/explanations.csv",
        "runs/phantoms/model/model.json",
        "runs/drive/eval/test/metrics.json",
        "masks/predictions.csv",
    ):
        assert (work / path).exists(), path
    assert len(list((work / "masks").glob("file-*.png"))) == 1  # named by keyed reference
    assert r.stdout.count("input,file,prob_") == 1  # predict without --out printed CSV rows
