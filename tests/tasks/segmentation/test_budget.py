"""How a segmentation plan splits its time budget (tasks/segmentation/budget.py)."""

from __future__ import annotations

import pytest

from scandx.tasks.segmentation.budget import (
    VALIDATION_SHARE,
    post_training_passes,
    sliding_windows,
    split_budget,
    validation_case_seconds,
)


def test_a_hand_worked_2d_plan():
    """DRIVE-like: 4 validation images of 42 windows, batch 8, 1 s a step, 600 s."""
    case_s = validation_case_seconds(1.0, windows=42, batch=8)
    assert case_s == pytest.approx(6 / 3)  # 6 forward batches of 8 windows
    passes = post_training_passes(True, 2)
    assert passes == 3  # as is, flipped along each of the two axes
    split = split_budget(600, 1.0, n_val=4, case_s=case_s, passes=passes)
    # 48 steps (480 s / 10 epochs); validation 8 s every ceil(8 / 7.2) = 2 epochs;
    # epochs = (480 - 3 * 8) / (48 + 8 / 2) = 8.77
    assert (split.steps_per_epoch, split.val_every, split.epochs) == (48, 2, 8)
    assert split.val_cases is None  # all 4 fit
    assert "validation on" not in split.note


def test_many_large_validation_volumes_are_cut_to_what_the_budget_affords():
    """142 volumes of 96^3 (28 validate): a pass over all would take longer than the
    whole budget; the plan validates on the first few, and says so."""
    step_s = 2.0
    case_s = validation_case_seconds(step_s, windows=27, batch=2)  # 14 batches: 9.3 s
    split = split_budget(300, step_s, n_val=28, case_s=case_s, passes=1)
    assert split.val_cases is not None and 1 <= split.val_cases < 28
    assert split.val_cases == 2  # int(0.15 * 300 / (2 * 9.33))
    assert (1 + 1) * split.val_cases * case_s <= VALIDATION_SHARE * 300
    assert f"validation on {split.val_cases} of the 28 validation cases" in split.note


def test_at_least_one_validation_case_even_when_none_fits():
    split = split_budget(10, 5.0, n_val=50, case_s=100.0, passes=1)
    assert split.val_cases == 1
    assert split.epochs == 3  # the floor: the engine's deadline stops it after one
    assert "the least run (one epoch of 10 steps" in split.note  # ~50 s + 200 s of 10


def test_3d_has_one_post_training_pass_without_flips():
    assert post_training_passes(False, 3) == 1
    assert post_training_passes(True, 3) == 4


def test_training_validates_on_the_plans_first_val_cases(tmp_path):
    """A plan with ``val_cases`` validates (and chooses its threshold) on that many."""
    import json

    from scandx.cli import main
    from scandx.tasks.segmentation.synthetic import make_ellipse_folders

    data = make_ellipse_folders(tmp_path / "ell", n=24, size=48)
    assert main(["-q", "plan", "--data", str(data), "--out", str(tmp_path / "p")]) == 0
    plan_path = tmp_path / "p" / "plan.json"
    plan = json.loads(plan_path.read_text())
    plan.update(epochs=1, steps_per_epoch=2, val_cases=2)
    plan_path.write_text(json.dumps(plan))
    run = tmp_path / "run"
    args = ["-q", "train", "--data", str(data), "--out", str(run), "--plan", str(plan_path)]
    assert main(args) == 0
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["validation_cases"] == 2
    assert summary["cases"]["per_split"]["val"] > 2


@pytest.mark.parametrize(
    "shape, window",
    [([96, 96, 96], [80, 80, 80]), ([584, 565], [192, 192]), ([50, 300], [64, 192]),
     ([96, 96, 2], [80, 80, 2]), ([200], [64])],
)  # fmt: skip
def test_window_count_matches_monais_sliding_window(shape, window):
    from monai.data.utils import dense_patch_slices
    from monai.inferers.utils import _get_scan_interval

    padded = tuple(max(s, w) for s, w in zip(shape, window, strict=True))
    interval = _get_scan_interval(padded, tuple(window), len(window), (0.5,) * len(window))
    monai = len(dense_patch_slices(padded, tuple(window), interval))
    assert sliding_windows(shape, window) == monai
