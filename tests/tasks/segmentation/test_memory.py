"""The plan's patch and batch fit a training-memory budget (estimate in memory.py,
checked against measured peaks by benchmarks/seg_memory.py)."""

from __future__ import annotations

import json

import pytest

from scandx.cli import main
from scandx.errors import ScandxError
from scandx.tasks.segmentation.memory import estimate_train_bytes, feature_elements
from scandx.tasks.segmentation.plan import fit_memory
from scandx.tasks.segmentation.synthetic import make_ellipse_folders


def test_feature_elements_hand_worked_and_estimate_grows_with_batch():
    strides = [[1, 1], [2, 2], [2, 2]]
    assert feature_elements([32, 32], strides) == 16 * 1024 + 32 * 256 + 64 * 64
    small = estimate_train_bytes([32, 32], strides, 2, "bf16")
    assert estimate_train_bytes([32, 32], strides, 4, "bf16") > small
    assert estimate_train_bytes([32, 32], strides, 2, "fp32") > small


def test_fit_memory_halves_the_batch_then_shrinks_the_patch():
    patch, batch, *_ = fit_memory([192, 192], 8, [1.0, 1.0], "bf16", 64 * 2**30)
    assert (patch, batch) == ([192, 192], 8)  # plenty of memory: unchanged
    need2 = estimate_train_bytes([192, 192], [[1, 1]] + [[2, 2]] * 4, 2, "bf16")
    patch, batch, strides, _, note = fit_memory([192, 192], 8, [1.0, 1.0], "bf16", need2)
    assert (patch, batch) == ([192, 192], 2) and "reduced to fit" in note
    patch, batch, *_ = fit_memory([192, 192], 8, [1.0, 1.0], "bf16", need2 - 1)
    assert batch == 2 and patch == [176, 192]
    with pytest.raises(ScandxError, match="memory budget is"):
        fit_memory([192, 192], 8, [1.0, 1.0], "bf16", 2**20)
    # fp32 keeps more bytes per element than bf16: the same budget fits a smaller batch
    assert fit_memory([64, 64], 8, [1.0, 1.0], "bf16", int(0.1 * 2**30))[1] == 4
    assert fit_memory([64, 64], 8, [1.0, 1.0], "fp32", int(0.1 * 2**30))[1] == 2


@pytest.mark.parametrize("precision, batch", [("fp32", 2), ("bf16", 4)])
def test_memory_budget_from_the_cli_is_honoured_and_recorded(
    tmp_path, capsys, monkeypatch, precision, batch
):
    # the batch that fits depends on the plan's precision, so force it: the outcome must
    # not depend on whether this CPU has bf16
    monkeypatch.setenv("SCANDX_PRECISION", precision)
    data = make_ellipse_folders(tmp_path / "f", n=8, size=64)
    out = tmp_path / "p"
    assert (
        main(["-q", "plan", "--data", str(data), "--out", str(out), "--memory-budget", "0.1"]) == 0
    )
    plan = json.loads((out / "plan.json").read_text())
    assert plan["precision"] == precision and plan["memory_budget_gb"] == 0.1
    # what the planner's own rule gives for that precision: batch 8 halved until it fits
    budget = int(0.1 * 2**30)
    patch, fitted, strides, *_ = fit_memory([64, 64], 8, [1.0, 1.0], precision, budget)
    assert (plan["patch_size"], plan["batch_size"]) == (patch, fitted) == ([64, 64], batch)
    assert plan["model_kwargs"]["strides"] == strides
    assert estimate_train_bytes(patch, strides, batch, precision) <= budget
    assert estimate_train_bytes(patch, strides, 2 * batch, precision) > budget
    assert any("reduced to fit" in n for n in plan["notes"])
    code = main(
        [
            "plan",
            "--data",
            str(tmp_path / "nowhere"),
            "--out",
            str(tmp_path / "q"),
            "--memory-budget",
            "1",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--memory-budget does not apply to classification" in err
