"""Half-written output (issue 11): a full disk leaves no ``last.ckpt.tmp`` and one line
"disk full while writing X"; an evaluation swapped in only whole, even after a kill
between its renames; a crash before the first checkpoint leaves no new run folder."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import uuid

import pytest

from scandx.cli import main
from scandx.core import run_dir as run_dir_module
from scandx.core.checkpoint import save_checkpoint
from scandx.core.engine import fit
from scandx.core.run_dir import RunDir, atomic_write
from scandx.errors import ScandxError
from tests.core.test_engine_health import ToyTask


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_while_checkpointing_leaves_no_tmp_and_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(run_dir_module.os, "fsync", _enospc)
    path = tmp_path / "checkpoints" / "last.ckpt"
    with pytest.raises(ScandxError, match="disk full while writing last.ckpt") as e:
        save_checkpoint(path, {"epochs_done": 1})
    assert "\n" not in str(e.value)
    assert list(path.parent.iterdir()) == []  # no last.ckpt, no last.ckpt.tmp


def test_a_full_disk_in_the_json_writer_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    atomic_write(target, "old\n")
    monkeypatch.setattr(run_dir_module.os, "fsync", _enospc)
    with pytest.raises(ScandxError, match="disk full while writing metrics.json"):
        atomic_write(target, "new\n")
    assert target.read_text() == "old\n" and sorted(os.listdir(tmp_path)) == ["metrics.json"]


def test_the_cli_names_a_full_disk(monkeypatch, capsys, tmp_path):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "x.csv"))

    monkeypatch.setattr("scandx.cli._dispatch", full)
    assert main(["-q", "plan", "--data", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("x.csv: disk full while writing: No space left on device")


@pytest.fixture
def small_tmpfs(tmp_path):
    """A real 256 KiB file system (root and mount only; skipped otherwise)."""
    mnt = tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("a real full disk needs root to mount a small tmpfs")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"mount -t tmpfs is not permitted here ({done.stderr.decode().strip()})")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


def test_training_on_a_real_full_disk_stops_with_one_line_and_no_tmp(small_tmpfs):
    run = RunDir(small_tmpfs / "run")
    run.path.mkdir()
    filler = small_tmpfs / "filler"
    with open(filler, "wb") as f:  # leave about 8 KiB: the log fits, a checkpoint not
        f.write(b"\0" * (256 - 8) * 1024)
    with pytest.raises(ScandxError, match="disk full while writing") as e:
        fit(ToyTask(epochs=2), run)
    assert e.value.where is not None and "\n" not in str(e.value)
    leftovers = [p.name for p in run.path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == [] and not run.last_ckpt.exists()


def test_a_crash_before_the_first_checkpoint_leaves_no_new_run(phantoms, tmp_path, monkeypatch):
    import scandx.tasks.classification.workflow as workflow

    def out_of_memory(*args, **kwargs):
        raise MemoryError("CUDA out of memory")

    monkeypatch.setattr(workflow, "fit", out_of_memory)
    run = tmp_path / "run"
    args = ["-q", "train", "--data", str(phantoms), "--out", str(run), "--model", "simple-cnn"]
    with pytest.raises(MemoryError):
        main([*args, "--time-budget", "3"])
    assert not run.exists()  # neither plan.json nor manifest.csv nor the lock


def test_an_evaluation_killed_between_its_renames_is_restored(tmp_path):
    run = RunDir(tmp_path)
    with run.atomic_eval("test") as out:
        (out / "metrics.json").write_text("1")
    # a kill after `eval/test -> eval/.test.old` and before the new folder's rename
    run.eval_dir("test").rename(tmp_path / "eval" / ".test.old")
    (tmp_path / "eval" / ".test.partial").mkdir()
    with pytest.raises(RuntimeError), run.atomic_eval("test"):
        raise RuntimeError("this evaluation fails too")
    assert (run.eval_dir("test") / "metrics.json").read_text() == "1"
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == ["test"]


def test_classification_evaluate_failing_after_metrics_keeps_the_previous_evaluation(
    quick_run, phantoms, tmp_path, monkeypatch
):
    import scandx.tasks.classification.evaluation.evaluate as evaluate

    run = tmp_path / "run"
    shutil.copytree(quick_run, run)
    evaluate.evaluate_run(run, phantoms, n_boot=20, gallery=0)
    before = {p.name: p.read_bytes() for p in (run / "eval" / "test").iterdir()}

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # after metrics.json and curves.json were written

    monkeypatch.setattr(evaluate, "write_report", killed)
    with pytest.raises(KeyboardInterrupt):
        evaluate.evaluate_run(run, phantoms, n_boot=20, gallery=0, split="test")
    after = {p.name: p.read_bytes() for p in (run / "eval" / "test").iterdir()}
    assert after == before
    assert sorted(p.name for p in (run / "eval").iterdir()) == ["test"]
