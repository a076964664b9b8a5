"""kill -9 at random points of train, evaluate and predict leaves no half-written output
and the rerun succeeds (CI size of benchmarks/faults.py: 3 kills each, tiny data)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "faults.py"


def _faults_module():
    spec = importlib.util.spec_from_file_location("faults_benchmark", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_problems_finds_half_written_output(tmp_path):
    faults = _faults_module()
    (tmp_path / "metrics.json").write_text('{"auc": 0.9')
    (tmp_path / "predictions.csv").write_text("path,prob\na.png,0.1\nb.png")
    (tmp_path / "last.ckpt.tmp").write_bytes(b"x")
    (tmp_path / ".plan.json.tmp").write_text("{")  # hidden: never read as a result
    found = sorted(faults.problems(tmp_path))
    assert found == [
        "last.ckpt.tmp: leftover",
        "metrics.json: JSON does not parse",
        "predictions.csv: CSV incomplete",
    ]


def test_kill_9_at_random_points_corrupts_nothing_and_reruns_succeed(tmp_path):
    rows = _faults_module().faults(kills=3, seed=0, work=tmp_path)
    assert [r["command"] for r in rows] == ["train", "evaluate", "predict"]
    for r in rows:
        assert r["corrupted"] == 0 and r["reruns_ok"] == r["kills"] == 3, r
