"""DDP training on the CPU with 2 processes (gloo): both tasks end near the single-process
result, rank 0 alone writes the run, resume equals an uninterrupted DDP run, a killed rank
ends the job with a clear message, and every rank makes the same decisions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from scandx.cli import main
from scandx.core import distributed as ddp
from tests.system_tools import wait_for_epochs

RUN_FILES = {"plan.json", "manifest.csv", "log.jsonl", "train_summary.json", "checkpoints", "model"}


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def _timeless(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    # one thread in a single process, as each of the 2 ranks has on 2 cores
    env = {"OMP_NUM_THREADS": "1", **os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "scandx", "-q", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def _ddp_run(out: Path, *args: str) -> subprocess.CompletedProcess:
    done = _cli("train", "--out", str(out), "--nproc", "2", *args)
    assert done.returncode == 0, done.stderr[-3000:]
    trained = [line for line in done.stdout.splitlines() if line.startswith("trained")]
    assert len(trained) == 1  # rank 0 reports, rank 1 is silent
    assert {p.name for p in out.iterdir()} - {".lock", "skipped.csv"} == RUN_FILES
    epochs = [r["epoch"] for r in _log(out)]
    assert epochs == list(range(1, len(epochs) + 1))  # one writer: no line twice
    return done


@pytest.fixture(scope="module")
def toy_npz(tmp_path_factory) -> Path:
    """Binary 28 px images: a faint square in one corner marks the positive class."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 240), ("val", 120), ("test", 40)):
        y = rng.integers(0, 2, (n, 1)).astype(np.uint8)
        x = rng.integers(0, 120, (n, 28, 28)).astype(np.uint8)
        x[y[:, 0] == 1, 4:12, 4:12] += 12  # faint: validation AUC about 0.94, not 1
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = x, y
    path = tmp_path_factory.mktemp("toy") / "toymnist.npz"
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope="module")
def cls_plan(toy_npz, tmp_path_factory) -> Path:
    from scandx.tasks.classification.workflow import plan_run

    plan = plan_run(toy_npz, time_budget_s=60, model="simple-cnn", seed=3)
    plan.epochs, plan.early_stopping_patience, plan.warmup_epochs = 6, 100, 1
    plan.batch_size = 15  # odd: the ranks' shares differ (8 + 7)
    path = tmp_path_factory.mktemp("plan") / "plan.json"
    plan.save(path)
    return path


def test_classification_two_processes_end_near_one(toy_npz, cls_plan, tmp_path):
    common = ("--data", str(toy_npz), "--plan", str(cls_plan))
    assert _cli("train", "--out", str(tmp_path / "one"), *common).returncode == 0
    _ddp_run(tmp_path / "two", *common)
    one, two = (
        json.loads((tmp_path / r / "train_summary.json").read_text()) for r in ("one", "two")
    )
    assert [r["lr"] for r in _log(tmp_path / "one")] == [r["lr"] for r in _log(tmp_path / "two")]
    # the same global batch and steps: the two runs differ by batch-norm statistics
    # (per rank) and the ranks' own augmentation; on 120 validation images the AUC's
    # standard error at 0.94 is about 0.02: the two must agree within 0.05
    auc1, auc2 = one["best"]["val_auc"], two["best"]["val_auc"]
    assert auc1 > 0.85 and auc2 > 0.85 and abs(auc1 - auc2) < 0.05, (auc1, auc2)


def test_segmentation_two_processes_end_near_one(tmp_path):
    from scandx.tasks.segmentation.synthetic import make_ellipse_folders
    from scandx.tasks.segmentation.workflow import seg_plan_run

    data = make_ellipse_folders(tmp_path / "f", n=12, size=48)
    plan = seg_plan_run(data, time_budget_s=60, seed=0)
    plan.epochs, plan.steps_per_epoch, plan.val_every, plan.batch_size = 6, 8, 2, 4
    plan.save(tmp_path / "plan.json")
    common = ("--data", str(data), "--plan", str(tmp_path / "plan.json"))
    assert _cli("train", "--out", str(tmp_path / "one"), *common).returncode == 0
    _ddp_run(tmp_path / "two", *common)
    one, two = (
        json.loads((tmp_path / r / "train_summary.json").read_text()) for r in ("one", "two")
    )
    # patches are drawn per rank from (seed, epoch, rank): another sample of the same
    # distribution; both must learn the ellipses, within 0.1 Dice of each other
    d1, d2 = one["best"]["val_dice"], two["best"]["val_dice"]
    assert d1 > 0.7 and d2 > 0.7 and abs(d1 - d2) < 0.1, (d1, d2)


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _rank_pid(launcher: int, rank: int) -> int | None:
    for pid in _children(launcher):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env:
            return pid
    return None


def test_a_killed_rank_ends_the_job_and_resume_matches_an_uninterrupted_run(
    toy_npz, cls_plan, tmp_path
):
    edited = json.loads(cls_plan.read_text())
    edited.update(epochs=12)  # ten epochs after the kill: still training when it comes
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(edited))
    common = ("--data", str(toy_npz), "--plan", str(plan))
    _ddp_run(tmp_path / "clean", *common)

    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "scandx", "-q", "train", "--out", str(killed), "--nproc", "2"]
    proc = subprocess.Popen([*cmd, *common], stderr=subprocess.PIPE, text=True)
    wait_for_epochs(killed, 2)
    victim = _rank_pid(proc.pid, 1)
    assert victim is not None, "rank 1 not found"
    os.kill(victim, signal.SIGKILL)
    _, err = proc.communicate(timeout=90)  # ended by the launcher, not by a hang
    assert proc.returncode == 1, err[-2000:]
    assert f"training rank 1 (pid {victim}) was killed by SIGKILL" in err
    assert "--resume" in err
    assert not (killed / "model").exists(), "the run finished before it could be killed"

    done = _cli("train", "--out", str(killed), "--nproc", "2", "--data", str(toy_npz), "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    assert _timeless(_log(killed)) == _timeless(_log(tmp_path / "clean"))


def test_folds_with_nproc_is_refused_in_one_line(toy_npz, tmp_path, capsys):
    args = ["train", "--data", str(toy_npz), "--out", str(tmp_path / "r"), "--nproc", "2"]
    assert main([*args, "--folds", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--folds does not run under DDP" in err[0]
    assert not (tmp_path / "r").exists()


def test_shards_and_batch_shares_cover_everything_once():
    for n in range(0, 12):
        for world in (1, 2, 3, 5):
            parts = [ddp.shard_range(n, r, world) for r in range(world)]
            assert [i for p in parts for i in p] == list(range(n))
            assert sum(ddp.batch_share(n, r, world) for r in range(world)) == n
    rows = torch.arange(3)
    assert [ddp.shard_rows(rows, r, 2).tolist() for r in (0, 1)] == [[0, 1], [2]]
    assert ddp.shard_rows(rows[:1], 1, 2).tolist() == [0]  # never empty
    argv = ["-q", "train", "--nproc", "2", "--data", "d", "--nproc=3", "--out", "o"]
    assert ddp.strip_nproc(argv) == ["-q", "train", "--data", "d", "--out", "o"]
