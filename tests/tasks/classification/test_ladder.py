"""The planner's ladder: consistent notes, the same plan for the same command on the
same machine (whatever its momentary load), and a forced precision."""

from __future__ import annotations

import json
import re
from pathlib import Path

from scandx.cli import main
from scandx.tasks.classification.ladder import MIN_EPOCHS, rungs


def _plan(data: Path, out: Path, *extra: str) -> dict:
    assert main(["-q", "plan", "--data", str(data), "--out", str(out), *extra]) == 0
    return json.loads((out / "plan.json").read_text())


def test_rungs_scale_width_depth_and_size_together():
    small = rungs(28, None, 2)
    assert [(n, kw.get("width", 1.0)) for n, kw, _, _ in small] == [
        ("resnet18", 1.0),
        ("resnet18", 0.5),
        ("resnet10", 0.5),
        ("resnet10", 0.25),
        ("simple-cnn", 1.0),
    ]
    assert all(kw.get("small_stem", True) for n, kw, _, _ in small if n.startswith("resnet"))
    big = [(label, size) for _, _, label, size in rungs(128, None, 2)]
    assert big[:3] == [("ResNet-18", 128), ("ResNet-18 half width", 128), ("ResNet-18", 96)]
    assert big[-1] == ("small CNN (2 conv + BN)", 64)
    assert [size for *_, size in rungs(300, "resnet18", 2)] == [224, 192, 160, 128, 96, 64]


def test_notes_name_one_choice_and_agree_with_the_plan(phantoms: Path, tmp_path: Path):
    plan = _plan(phantoms, tmp_path / "p", "--time-budget", "30")
    ladder = [n for n in plan["notes"] if n.startswith("ladder:")]
    chosen = [n for n in ladder if "chosen" in n and "not chosen" not in n]
    assert len(chosen) == 1 and ladder[-1] == chosen[0]
    assert all(f"fewer than {MIN_EPOCHS}, not chosen" in n for n in ladder[:-1])
    planned = re.search(r"(\d+) epochs planned", chosen[0]) or re.search(r"-> (\d+) ep", chosen[0])
    assert int(planned.group(1)) == plan["epochs"]  # a loaded machine fits < 3: 3 planned
    assert not any("rejected" in n for n in plan["notes"])


def test_the_same_command_gives_the_same_plan_under_load(phantoms, tmp_path, monkeypatch):
    """Timings are cached per machine: a machine that became 50x slower (another job
    running) plans the same; without the cache it would not."""
    from scandx.tasks.classification import ladder

    monkeypatch.setenv("SCANDX_CACHE_DIR", str(tmp_path / "cache"))
    first = _plan(phantoms, tmp_path / "a", "--time-budget", "30")
    real = ladder.best_of  # patched where the planner looks it up
    monkeypatch.setattr(ladder, "best_of", lambda step, **kw: 50 * real(step, **kw))
    again = _plan(phantoms, tmp_path / "b", "--time-budget", "30")
    assert again == first
    monkeypatch.setenv("SCANDX_SPEED_CACHE", "off")
    loaded = _plan(phantoms, tmp_path / "c", "--time-budget", "30")
    assert (loaded["model"], loaded["model_kwargs"], loaded["epochs"]) != (
        first["model"],
        first["model_kwargs"],
        first["epochs"],
    )


def test_a_forced_precision_is_planned_and_noted(phantoms: Path, tmp_path: Path):
    for precision in ("fp32", "bf16"):
        plan = _plan(
            phantoms, tmp_path / precision, "--time-budget", "10", "--precision", precision
        )
        assert plan["precision"] == precision
        assert f"precision {precision}" in plan["notes"][0]
