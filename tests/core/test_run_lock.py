"""One run directory is held by one process at a time (core/run_dir.py RunDir.hold): a
second scandx process on the same RUN gets one line and exit 2; the lock dies with its
process, even by kill -9 (issue 11: two `train` on one --out both exited 0)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from scandx.cli import main
from scandx.core.run_dir import RunDir
from scandx.errors import ScandxError
from scandx.tasks.classification.plan import Plan

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _holder(run: Path) -> subprocess.Popen:
    """Another process holding ``run`` until killed; returns once it holds it."""
    code = textwrap.dedent(
        f"""
        import sys, time
        from scandx.core.run_dir import RunDir
        with RunDir({str(run)!r}).hold():
            print("held", flush=True)
            time.sleep(120)
        """
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"held"
    return proc


@pytest.fixture
def held_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    Plan(task="binary", classes=["a", "b"], model="simple-cnn").save(run / "plan.json")
    proc = _holder(run)
    yield run, proc
    proc.kill()
    proc.wait()


def test_a_second_process_on_a_held_run_gets_one_line_and_exit_2(held_run, tmp_path, capsys):
    run, proc = held_run
    data = tmp_path / "data"
    (data / "a").mkdir(parents=True)
    image = tmp_path / "x.png"
    image.write_bytes(b"")
    commands = [
        ["train", "--data", str(data), "--out", str(run), "--resume"],
        ["evaluate", str(run), "--data", str(data)],
        ["explain", str(run), str(image), "--out", str(tmp_path / "ex")],
        ["predict", str(run), str(image), "--out", str(tmp_path / "pred")],
        ["plan", "--data", str(data), "--out", str(run)],
    ]
    for args in commands:
        assert main(["-q", *args]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, (args, err)
        assert f"{run}: is in use by another scandx process (pid {proc.pid})" in err[0]
    assert sorted(p.name for p in run.iterdir()) == [".lock", "plan.json"]  # untouched


def test_the_lock_dies_with_a_killed_process(held_run):
    run, proc = held_run
    with pytest.raises(ScandxError, match="in use"), RunDir(run).hold():
        pass
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with RunDir(run).hold():  # not stale: the kernel released it
        assert json.loads((run / "plan.json").read_text())["task"] == "binary"


def test_a_new_folder_made_only_for_the_lock_is_removed_again(tmp_path):
    run = RunDir(tmp_path / "new")
    with pytest.raises(ScandxError), run.hold():
        raise ScandxError("bad data")
    assert not run.path.exists()
    with run.hold():
        (run.path / "plan.json").write_text("{}")
    assert (run.path / "plan.json").exists()  # kept: the command wrote to it
    with RunDir(tmp_path / "absent").hold(create=False):
        pass
    assert not (tmp_path / "absent").exists()
