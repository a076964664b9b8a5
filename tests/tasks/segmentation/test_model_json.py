"""Segmentation's own model.json keys: a hand edit is one line naming the key, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from scandx.errors import ScandxError
from scandx.tasks.segmentation.predictor import check_seg_model_json

GOOD = {"postprocessing": {"1": {"keep_largest_component": True}}, "threshold": {"value": 0.4}}


def test_a_valid_model_json_passes():
    check_seg_model_json(GOOD, Path("model.json"))
    check_seg_model_json({**GOOD, "threshold": None}, Path("model.json"))


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        ({"postprocessing": None}, "'postprocessing' is missing"),
        ({"postprocessing": [1]}, "postprocessing"),
        ({"postprocessing": {"x": {}}}, r"postprocessing\['x'\]"),
        ({"postprocessing": {"1": "yes"}}, r"postprocessing\['1'\]"),
        ({"postprocessing": {"1": {"keep_largest_component": "yes"}}}, "true/false"),
        ({"threshold": {"value": "high"}}, "threshold.value"),
        ({"threshold": {"value": 7}}, "not a probability"),
        ({"threshold": {"value": float("nan")}}, "not a probability"),
        ({"threshold": {}}, "threshold.value"),
    ],
)
def test_hand_edits_are_one_line(edit, match):
    with pytest.raises(ScandxError, match=match) as e:
        check_seg_model_json({**GOOD, **edit}, Path("run/model/model.json"))
    assert "model.json" in str(e.value) and "\n" not in str(e.value)
