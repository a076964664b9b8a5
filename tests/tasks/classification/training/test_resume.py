"""Resume after an interruption ends with the same metrics and weights as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from scandx.tasks.classification.workflow import plan_run, train_run
from tests.system_tools import wait_for_epochs


def _log(run):
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def plan_file(phantoms, tmp_path_factory):
    plan = plan_run(phantoms, time_budget_s=30, model="resnet18", seed=5)
    plan.epochs, plan.early_stopping_patience = 4, 100
    path = tmp_path_factory.mktemp("plan") / "plan.json"
    plan.save(path)
    return path


class Interrupt(Exception):
    pass


def test_resume_matches_uninterrupted(phantoms, plan_file, tmp_path):
    full = tmp_path / "full"
    train_run(phantoms, full, plan_path=plan_file)

    def stop_after_second_epoch(epoch, record):
        if epoch == 2:  # epochs count from 1
            raise KeyboardInterrupt  # what Ctrl-C does in the middle of a run

    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        train_run(phantoms, cut, plan_path=plan_file, hooks=[stop_after_second_epoch])
    assert (cut / "checkpoints" / "last.ckpt").exists() and not (cut / "model").exists()
    train_run(phantoms, cut, resume=True)

    a, b = _log(full), _log(cut)
    assert [r["epoch"] for r in b] == [1, 2, 3, 4]
    for ra, rb in zip(a, b, strict=True):
        assert ra["val_auc"] == rb["val_auc"] and ra["train_loss"] == rb["train_loss"]
    wa = load_file(str(full / "model" / "weights.safetensors"))
    wb = load_file(str(cut / "model" / "weights.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_best_checkpoint_is_a_copy(phantoms, plan_file, tmp_path):
    run = tmp_path / "run"
    train_run(phantoms, run, plan_path=plan_file)
    best = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    best_epoch = max(r["epoch"] for r in _log(run) if r["best"])
    assert best["epoch"] == best_epoch
    restored = "recovery" in _log(run)[-1]  # the engine put the best weights back
    if best_epoch != 4 and not restored:  # the live model moved on; the copy did not
        assert any(not torch.equal(best["model"][k], last["model"][k]) for k in best["model"])
    saved = load_file(str(run / "model" / "weights.safetensors"))
    assert all(torch.equal(saved[k], best["model"][k]) for k in saved)


def test_sigkill_then_resume_matches(phantoms, plan_file, tmp_path):
    """A real kill -9 of the CLI mid-run, then --resume: same final log as a clean run."""
    edited = json.loads(plan_file.read_text())
    # 12 epochs: after the second, ten more plus calibration stand between the kill and a
    # finished run, so even a fast machine is still training when it is killed
    edited.update(model="simple-cnn", model_kwargs={}, epochs=12)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(edited))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cli = [
        sys.executable,
        "-m",
        "scandx.cli",
        "-q",
        "train",
        "--data",
        str(phantoms),
        "--plan",
        str(plan),
    ]

    clean = tmp_path / "clean"
    subprocess.run([*cli, "--out", str(clean)], check=True, env=env, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen([*cli, "--out", str(killed)], env=env, stderr=subprocess.DEVNULL)
    wait_for_epochs(killed, 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "model").exists(), "the run finished before it could be killed"
    subprocess.run(
        [*cli, "--out", str(killed), "--resume"], check=True, env=env, capture_output=True
    )
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(_log(clean)) == strip(_log(killed))
