"""The best epoch: the highest validation score, where the task's tolerance makes a
score close to the highest a tie that the later (longer-trained) epoch wins."""

from __future__ import annotations

from scandx.core.engine import Schedule, fit
from scandx.core.run_dir import RunDir
from scandx.core.train_log import read_log
from tests.core.test_engine_health import ToyTask


class Saturated(ToyTask):
    """Scores that saturate; the tolerance is the task's to give."""

    def __init__(self, scores: list[float], tolerance: float, **schedule) -> None:
        super().__init__(epochs=len(scores), scores=scores)
        self.schedule = Schedule(epochs=len(scores), steps_per_epoch=4, lr=0.05, **schedule)
        self.tolerance = tolerance

    def validate(self, model, epoch, device, precision):
        val = super().validate(model, epoch, device, precision)
        return {**val, "tolerance": self.tolerance}


SCORES = [0.80, 0.997, 0.995, 0.9962, 0.990, 0.9965, 0.980]


def _fit(tmp_path, name, task):
    run = RunDir(tmp_path / name)
    run.path.mkdir()
    return fit(task, run), run


def test_without_a_tolerance_the_first_maximum_is_the_best(tmp_path):
    result, run = _fit(tmp_path, "strict", Saturated(SCORES, 0.0))
    assert result.best["epoch"] == 2
    assert [r["best"] for r in read_log(run.log_jsonl)] == [1, 1, 0, 0, 0, 0, 0]


def test_a_tie_within_the_tolerance_goes_to_the_later_epoch(tmp_path):
    result, run = _fit(tmp_path, "ties", Saturated(SCORES, 0.001))
    # 0.9962 and 0.9965 are within 0.001 of 0.997 (the highest, never lowered by a tie);
    # 0.995 and 0.990 are not
    assert result.best["epoch"] == 6
    assert [r["best"] for r in read_log(run.log_jsonl)] == [1, 1, 0, 1, 0, 1, 0]
    assert "tolerance" not in result.best and "score" not in result.best
    assert run.best_ckpt.exists()


def test_the_highest_score_is_the_reference_not_the_last_tie(tmp_path):
    """Ties never lower the bar: 0.996 ties with 0.997, 0.995 ties with 0.996 only."""
    result, _ = _fit(tmp_path, "drift", Saturated([0.8, 0.997, 0.996, 0.995, 0.994], 0.0015))
    assert result.best["epoch"] == 3


def test_a_tie_counts_as_progress_for_early_stopping(tmp_path):
    flat = [0.8, 0.997, 0.9965, 0.9968, 0.9966, 0.9967, 0.9969]
    strict, _ = _fit(tmp_path, "strict", Saturated(flat, 0.0, patience=2))
    assert strict.stopped == "early stop" and len(strict.history) == 4
    ties, _ = _fit(tmp_path, "ties", Saturated(flat, 0.001, patience=2))
    assert ties.stopped == "completed" and ties.best["epoch"] == 7
