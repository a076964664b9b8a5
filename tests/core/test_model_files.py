"""core/predictor.py: paths from model.json stay inside their folder; ensemble members
stay inside the run (issue 11)."""

from __future__ import annotations

from pathlib import Path

import pytest

from scandx.core.predictor import inside, require
from scandx.errors import ScandxError

WHERE = Path("model/model.json")


def test_relative_path_inside_is_resolved(tmp_path):
    (tmp_path / "w.bin").write_bytes(b"x")
    assert inside(tmp_path, "w.bin", WHERE, "weights") == (tmp_path / "w.bin").resolve()


@pytest.mark.parametrize("rel", ["/etc/passwd", "../x", "a/../../x", "", "C:/x", 5, None])
def test_paths_that_leave_or_are_not_paths_are_refused(tmp_path, rel):
    with pytest.raises(ScandxError, match="'weights'"):
        inside(tmp_path, rel, WHERE, "weights")


def test_ensemble_members_may_step_up_but_not_out_of_the_run(tmp_path):
    model = tmp_path / "run" / "model"
    member = tmp_path / "run" / "folds" / "fold0" / "model"
    model.mkdir(parents=True)
    member.mkdir(parents=True)
    run = tmp_path / "run"
    assert inside(run, "../folds/fold0/model", WHERE, "ensemble[0]", base=model) == member
    with pytest.raises(ScandxError, match="outside"):
        inside(run, "../../elsewhere/model", WHERE, "ensemble[0]", base=model)


def test_require_names_nested_keys_and_types():
    info = {"a": {"b": "x"}, "n": True, "f": 1}
    assert require(info, WHERE, "a.b", str) == "x"
    assert require(info, WHERE, "f", float) == 1
    with pytest.raises(ScandxError, match="'a.b' must be"):
        require(info, WHERE, "a.b", int)
    with pytest.raises(ScandxError, match="'n' must be"):
        require(info, WHERE, "n", int)  # a boolean is not a count
    with pytest.raises(ScandxError, match="'a.c' is missing"):
        require(info, WHERE, "a.c", str)
    assert require(info, WHERE, "z", dict, optional=True) is None
