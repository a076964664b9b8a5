"""The engine watches its own health: divergence and collapse are recovered from (and
logged), a run that never trains fails clearly, and the time budget is kept."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import pytest
import torch

from scandx.core.engine import Schedule, TrainingTask, fit
from scandx.core.health import Health, TrainingDiverged
from scandx.core.run_dir import RunDir
from scandx.core.train_log import read_log


class ToyTask(TrainingTask):
    """Logistic regression on two separable blobs; faults injected on request."""

    def __init__(self, epochs: int = 6, **faults) -> None:
        self.seed, self.device, self.precision = 0, "cpu", "fp32"
        self.schedule = Schedule(epochs=epochs, steps_per_epoch=4, lr=0.05)
        self.health = Health(chance=0.5)
        self.faults = faults
        self.nan_epochs = set(faults.get("nan_once_at", ()))  # cleared after it fires
        g = torch.Generator().manual_seed(0)
        self.x = torch.cat(
            [torch.randn(64, 4, generator=g) + 2, torch.randn(64, 4, generator=g) - 2]
        )
        self.y = torch.cat([torch.ones(64), torch.zeros(64)]).long()
        self.current_epoch = -1
        self.scores = faults.get("scores")

    def build_model(self) -> torch.nn.Module:
        return torch.nn.Linear(4, 2)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = torch.nn.functional.cross_entropy(output, target)
        if self.faults.get("always_nan") or self.current_epoch in self.nan_epochs:
            self.nan_epochs.discard(self.current_epoch)
            return loss * float("nan")
        return loss

    def batches(self, epoch: int, device: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.current_epoch = epoch
        order = torch.randperm(128, generator=torch.Generator().manual_seed(epoch))
        for b in range(4):
            idx = order[b * 32 : (b + 1) * 32]
            if self.faults.get("sleep"):
                time.sleep(self.faults["sleep"])
            if self.faults.get("first_epoch_sleep") and epoch == 0 and b == 0:
                time.sleep(self.faults["first_epoch_sleep"])
            yield self.x[idx], self.y[idx]

    def validate(self, model, epoch, device, precision):
        with torch.no_grad():
            p = model(self.x).softmax(1)[:, 1]
        acc = float(((p > 0.5).long() == self.y).float().mean())
        score = self.scores[epoch] if self.scores else acc
        return {"val_acc": acc, "score": score}


def test_a_nan_loss_is_recovered_from_and_logged(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    result = fit(ToyTask(nan_once_at=[2]), run)
    assert result.stopped == "completed"
    assert all(math.isfinite(float(p.detach().sum())) for p in result.model.parameters())
    (event,) = result.recoveries
    assert event["epoch"] == 3 and "non-finite training loss" in event["reason"]
    assert "restored the weights of epoch 2" in event["action"] and "x0.5" in event["action"]
    lines = read_log(run.log_jsonl)
    assert [r["epoch"] for r in lines] == [1, 2, 3, 4, 5, 6]  # the epoch replayed, once
    assert lines[2]["recovery"][0]["reason"] == event["reason"]
    assert result.best["val_acc"] == 1.0


def test_a_nan_in_the_first_epoch_restarts_from_the_initial_weights(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    result = fit(ToyTask(nan_once_at=[0]), run)
    assert "restarted from the initial weights" in result.recoveries[0]["action"]
    assert result.best["val_acc"] == 1.0


def test_a_run_that_never_trains_fails_clearly_and_keeps_no_model(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    with pytest.raises(TrainingDiverged, match="never produced a usable model"):
        fit(ToyTask(always_nan=True), run)
    assert not run.best_ckpt.exists()


def test_a_score_back_at_chance_restores_the_best_weights(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    scores = [0.7, 0.9, 0.5, 0.49, 0.85, 0.86]
    result = fit(ToyTask(scores=scores), run)
    (event,) = result.recoveries
    assert event["epoch"] == 4 and "at chance (0.5) for 2 validations" in event["reason"]
    assert "restored the best weights (epoch 2)" in event["action"]
    assert result.best["epoch"] == 2
    lines = read_log(run.log_jsonl)
    assert lines[3]["recovery"] and not lines[3]["best"]
    assert lines[4]["lr"] < lines[2]["lr"]


def test_one_validation_at_chance_is_noise_not_collapse(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    result = fit(ToyTask(scores=[0.7, 0.9, 0.5, 0.8, 0.5, 0.86]), run)
    assert result.recoveries == [] and result.best["epoch"] == 2


def test_constant_predictions_are_a_collapse(tmp_path):
    class Dead(ToyTask):
        def validate(self, model, epoch, device, precision):
            return {"score": 0.5 if epoch >= 2 else 0.9, "constant": epoch >= 2}

    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    result = fit(Dead(epochs=4), run)
    assert [e["epoch"] for e in result.recoveries] == [3, 4]
    assert all("constant predictions" in e["reason"] for e in result.recoveries)


def test_recovery_survives_a_resume(tmp_path):
    """lr scale and the recovery record live in last.ckpt: resuming gives the same run."""
    a, b = RunDir(tmp_path / "a"), RunDir(tmp_path / "b")
    a.path.mkdir(), b.path.mkdir()
    whole = fit(ToyTask(nan_once_at=[1]), a)
    fit(ToyTask(nan_once_at=[1]), b, stop_after=3)
    resumed = fit(ToyTask(), b, resume=True)
    assert resumed.recoveries == whole.recoveries
    for p, q in zip(whole.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(p, q)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in read_log(a.log_jsonl)]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in read_log(b.log_jsonl)]


def test_the_time_budget_stops_training(tmp_path):
    """No epoch starts that the epochs so far say would end past the deadline."""
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    task = ToyTask(epochs=50, sleep=0.1)  # ~0.4 s an epoch
    task.schedule.deadline_s = 3.0
    result = fit(task, run)
    assert result.stopped == "time budget"
    lines = read_log(run.log_jsonl)
    assert 2 <= len(lines) < 50 and len(lines) == len(result.history)
    seconds = [r["seconds"] for r in lines]
    assert sum(seconds[:-1]) + sum(seconds[:-1]) / max(1, len(seconds) - 1) <= 3.0
    assert task.final_epoch == len(lines)  # the task was told which epoch is its last


def test_the_schedule_ends_in_time_even_after_a_slow_start(tmp_path):
    """A slow first epoch (another job running) shortens the schedule; faster epochs
    let it grow back; either way the cosine ends (lr ~1% of base) at the last epoch."""
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    task = ToyTask(epochs=60, sleep=0.025, first_epoch_sleep=0.8)
    task.schedule.deadline_s = 6.0
    result = fit(task, run)
    lines = read_log(run.log_jsonl)
    assert result.stopped == "time budget" and 4 <= len(lines) < 60
    assert lines[-1]["lr"] <= 0.02 * task.schedule.lr


def test_the_deadline_keeps_free_what_the_task_needs_after_training(tmp_path):
    """Segmentation chooses its threshold on the validation cases after training (three
    sliding-window passes in 2D): the engine leaves that time, from the validation passes
    it measured, out of the training deadline."""

    class SlowValidation(ToyTask):
        def validate(self, model, epoch, device, precision):
            time.sleep(0.1)
            return super().validate(model, epoch, device, precision)

    class SlowAfter(SlowValidation):
        def seconds_after_training(self, validation_s):
            self.asked.append(validation_s)
            return 10 * validation_s  # ~1 s

    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    task = SlowAfter(epochs=50, sleep=0.05)  # ~0.3 s an epoch, validation included
    task.asked = []
    task.schedule.deadline_s = 3.0
    result = fit(task, run)
    assert result.stopped == "time budget"
    training = sum(r["seconds"] for r in result.history)
    assert training + 10 * 0.1 <= 3.0 * 1.1  # training, then the ~1 s after it
    assert min(task.asked) >= 0.1  # measured passes, not a guess
    plain = SlowValidation(epochs=50, sleep=0.05)
    plain.schedule.deadline_s = 3.0
    run2 = RunDir(tmp_path / "plain")
    run2.path.mkdir()
    assert len(result.history) < len(fit(plain, run2).history)  # the reserve cost epochs


def test_a_run_stopped_by_the_budget_is_validated_at_its_last_epoch(tmp_path):
    """A task that validates only now and then (segmentation: every few epochs) is
    validated on the epoch the budget ended it on, so the run has a best model."""

    class Sparse(ToyTask):
        def validate(self, model, epoch, device, precision):
            if epoch + 1 != (self.final_epoch or self.schedule.epochs):
                return None
            return super().validate(model, epoch, device, precision)

        def batches(self, epoch, device):
            if epoch == 2:
                time.sleep(2.0)  # another job starts: this epoch overruns the budget
            yield from super().batches(epoch, device)

    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    task = Sparse(epochs=40)
    task.schedule.deadline_s = 2.0
    result = fit(task, run)
    assert result.stopped == "time budget" and len(result.history) == 3
    assert result.best["epoch"] == 3 and result.best["validated"] and run.best_ckpt.exists()


class HiddenNaNTask(ToyTask):
    """A finite loss whose gradient, in the first step only, is infinite on a parameter
    the forward pass does not use: without gradient clipping that weight turns NaN
    while the loss and the validation score look fine."""

    def __init__(self) -> None:
        super().__init__(epochs=3)
        self.schedule = Schedule(epochs=3, steps_per_epoch=4, lr=0.05, grad_clip=None)
        self.fired = False

    def build_model(self) -> torch.nn.Module:
        model = torch.nn.Linear(4, 2)
        model.hidden = torch.nn.Parameter(torch.zeros(3))
        self.hidden = model.hidden
        return model

    def loss(self, output, target):
        loss = super().loss(output, target)
        if not self.fired:
            self.fired = True
            return loss + torch.sqrt(self.hidden - self.hidden.detach()).sum()
        return loss


def test_non_finite_weights_behind_a_finite_loss_are_recovered_from(tmp_path):
    """issue 11: a model with NaN weights was kept as the best and saved with exit 0."""
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    result = fit(HiddenNaNTask(), run)
    assert all(bool(torch.isfinite(p).all()) for p in result.model.parameters())
    (event,) = result.recoveries
    assert event["reason"] == "non-finite weights after the epoch"
    best = torch.load(run.best_ckpt, weights_only=True)["model"]
    assert all(bool(torch.isfinite(t).all()) for t in best.values())


def test_a_model_left_with_non_finite_weights_is_never_returned(tmp_path, monkeypatch):
    import scandx.core.engine as engine

    checks = iter([True] * 6 + [False])  # every epoch fine, the final model not
    monkeypatch.setattr(engine, "finite_weights", lambda model: next(checks, False))
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    with pytest.raises(TrainingDiverged):
        fit(ToyTask(), run)
