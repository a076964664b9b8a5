"""--resume never re-plans nor overwrites the run's plan.json, never trains on what is left
of deleted data, and with nothing to resume says so (exit 2) instead of starting a fresh
run at the default budget (issue 11; core/run_dir.py, the tasks' workflows)."""

from __future__ import annotations

import json
import shutil

import pytest

from scandx.cli import main
from scandx.core.run_dir import RunDir
from scandx.errors import ScandxError


def _edited_plan_run(phantoms, tmp_path):
    """A run killed before its first checkpoint: the user's plan.json (2 epochs), a log
    line of an epoch that never reached a checkpoint, nothing else."""
    data = tmp_path / "data"
    shutil.copytree(phantoms, data)
    run = tmp_path / "run"
    plan_args = ["-q", "plan", "--data", str(data), "--out", str(run), "--model", "simple-cnn"]
    assert main([*plan_args, "--time-budget", "5"]) == 0
    plan = json.loads((run / "plan.json").read_text())
    plan.update(epochs=2, early_stopping_patience=100, min_epochs=1, time_budget_s=None)
    (run / "plan.json").write_text(json.dumps(plan, indent=2) + "\n")
    (run / "log.jsonl").write_text(json.dumps({"epoch": 1, "train_loss": 9.0}) + "\n")
    return data, run


def test_resume_before_the_first_checkpoint_keeps_the_plan_and_the_log_clean(phantoms, tmp_path):
    data, run = _edited_plan_run(phantoms, tmp_path)
    before = (run / "plan.json").read_text()
    assert main(["-q", "train", "--data", str(data), "--out", str(run), "--resume"]) == 0
    plan = json.loads((run / "plan.json").read_text())
    assert plan["epochs"] == 2 and plan["model"] == "simple-cnn"
    saved = json.loads(before)
    assert {k: v for k, v in plan.items() if k != "notes"} == {
        k: v for k, v in saved.items() if k != "notes"
    }  # as the user left it (training may only add notes)
    assert plan["notes"][: len(saved["notes"])] == saved["notes"]
    epochs = [json.loads(line)["epoch"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]  # the void line is gone, no epoch twice
    assert (run / "manifest.csv").exists() and (run / "model" / "model.json").exists()


def test_resume_after_input_files_were_deleted_names_the_missing_cases(phantoms, tmp_path, capsys):
    data, run = _edited_plan_run(phantoms, tmp_path)
    args = ["-q", "train", "--data", str(data), "--out", str(run), "--resume"]
    assert main(args) == 0
    gone = sorted(p for p in data.rglob("*") if p.is_file() and p.suffix in (".png", ".dcm"))[:3]
    for p in gone:
        p.unlink()
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "3 of the" in err[0] and "missing from the data" in err[0]


@pytest.mark.parametrize("state", ["no run directory", "an empty run directory"])
def test_resume_with_nothing_to_resume_is_one_line_and_exit_2(tmp_path, capsys, state):
    data = tmp_path / "data"
    (data / "a").mkdir(parents=True)
    run = tmp_path / "run"
    if state == "an empty run directory":
        run.mkdir()
    code = main(["-q", "train", "--data", str(data), "--out", str(run), "--resume"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and f"{run}: nothing to resume (no plan.json)" in err[0]
    assert run.exists() == (state != "no run directory")


def test_check_cases_present_compares_with_the_manifest(tmp_path):
    run = RunDir(tmp_path)
    (tmp_path / "manifest.csv").write_text("case_id,split\na,train\nb,val\nc,test\n")
    run.check_cases_present({"a", "b", "c", "d"}, "data")
    with pytest.raises(ScandxError, match=r"1 of the 3 cases .* \(b\)"):
        run.check_cases_present({"a", "c"}, "data")
