"""The run directory contract (core/run_dir.py)."""

from __future__ import annotations

import pytest

from scandx.core.privacy import file_ref
from scandx.core.run_dir import RunDir, write_json, write_skipped
from scandx.errors import ScandxError


def test_guard_refuses_a_directory_that_holds_a_run(tmp_path):
    run = RunDir(tmp_path / "run")
    run.guard_new(resume=False)  # empty: fine
    run.model_dir.mkdir(parents=True)
    with pytest.raises(ScandxError, match="already holds a run"):
        run.guard_new(resume=False)
    run.guard_new(resume=True)


def test_atomic_eval_swaps_in_only_a_complete_folder(tmp_path):
    run = RunDir(tmp_path)
    with run.atomic_eval("test") as out:
        (out / "metrics.json").write_text("1")
    assert (run.eval_dir("test") / "metrics.json").read_text() == "1"
    with pytest.raises(RuntimeError), run.atomic_eval("test") as out:
        (out / "metrics.json").write_text("2")
        raise RuntimeError("a case failed")
    assert (run.eval_dir("test") / "metrics.json").read_text() == "1"  # previous kept
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == ["test"]  # no leftovers


def test_training_scope_removes_a_run_that_failed_before_its_first_checkpoint(tmp_path):
    run = RunDir(tmp_path / "new")
    with pytest.raises(ValueError), run.training():
        (run.path / "plan.json").write_text("{}")
        raise ValueError("bad data")
    assert not run.path.exists()
    kept = RunDir(tmp_path / "interrupted")
    with pytest.raises(KeyboardInterrupt), kept.training():
        raise KeyboardInterrupt
    assert kept.path.exists()  # --resume may continue


def test_json_and_skipped_files(tmp_path):
    write_json(tmp_path / "a.json", {"x": 1})
    assert (tmp_path / "a.json").read_text() == '{\n  "x": 1\n}\n'
    write_skipped(tmp_path, [])
    assert not (tmp_path / "skipped.csv").exists()
    write_skipped(tmp_path, [("/data/Doe_John/a.dcm", "not found: /data/Doe_John/a.dcm")])
    ref = file_ref("/data/Doe_John/a.dcm")  # a keyed pseudonym, never the path
    assert (tmp_path / "skipped.csv").read_text().splitlines() == [
        "file,reason",
        f"{ref},not found: {ref}",
    ]
    write_skipped(tmp_path, [(f"{tmp_path}/m.csv:7", "missing label")])
    assert (
        f"{file_ref(tmp_path / 'm.csv')}:7,missing label" in (tmp_path / "skipped.csv").read_text()
    )
