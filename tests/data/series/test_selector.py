"""The series selector: JSON rules, combinators, and key-by-key checking."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scandx.data.series import group_studies, load_selector, select
from scandx.errors import ScandxError
from tests.data.series.builders import SAGITTAL, axial_positions, write_slices


@pytest.fixture
def study(tmp_path):
    def series(name, n, description, modality="CT", orientation=None, body=""):
        extra = [{"BodyPartExamined": body}] * n if body else None
        positions = (
            axial_positions(n) if orientation is None else [(2.0 * k, 0, 0) for k in range(n)]
        )
        write_slices(
            tmp_path / "in" / name,
            [np.zeros((8, 6), np.int16)] * n,
            positions,
            orientation or (1, 0, 0, 0, 1, 0),
            study_uid="1.2.826.0.1.3680043.99.1",
            modality=modality,
            description=description,
            extra=extra,
        )

    series("chest", 25, "Thorax Chest 1mm")
    series("abdomen", 30, "Abdomen", body="ABDOMEN")
    series("scout", 3, "Topogram")
    series("body", 22, "Body", body="CHEST")
    series("sag", 21, "Chest sag", orientation=SAGITTAL)
    series("mr", 24, "chest MR", modality="MR")
    (studies,) = group_studies(tmp_path / "in")
    return studies


def _selector(tmp_path, rules):
    path = tmp_path / "selector.json"
    path.write_text(json.dumps(rules))
    return load_selector(path)


def _names(series):
    return sorted(s.description for s in series)


def test_the_issue_example_picks_chest_ct_series_with_enough_slices(study, tmp_path):
    rules = {
        "all": [
            {"modality": ["CT"]},
            {"any": [{"series_description": "(?i)chest"}, {"body_part": ["CHEST"]}]},
            {"min_slices": 20},
        ]
    }
    assert _names(select(study, _selector(tmp_path, rules))) == [
        "Body",
        "Chest sag",
        "Thorax Chest 1mm",
    ]


def test_not_orientation_image_type_and_sizes(study, tmp_path):
    axial_ct = {"modality": "ct", "orientation": ["axial"], "not": {"max_slices": 3}}
    assert _names(select(study, _selector(tmp_path, axial_ct))) == [
        "Abdomen",
        "Body",
        "Thorax Chest 1mm",
    ]
    sagittal = {
        "orientation": "sagittal",
        "image_type": ["ORIGINAL"],
        "min_rows": 8,
        "max_columns": 6,
    }
    assert _names(select(study, _selector(tmp_path, sagittal))) == ["Chest sag"]
    assert select(study, _selector(tmp_path, {"min_columns": 7})) == []


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"all": [{"modality": ["CT"]}, {"modalty": ["CT"]}]}, "key 'all[1].modalty': unknown key"),
        (
            {"min_slices": "20"},
            "key 'min_slices': a whole number >= 0 expected, not a string ('20')",
        ),
        ({"min_slices": True}, "key 'min_slices': a whole number >= 0 expected"),
        ({"any": {"modality": "CT"}}, "key 'any': a non-empty list of selectors expected"),
        ({"not": [{"modality": "CT"}]}, "key 'not': a selector is a JSON object, not a list"),
        (
            {"series_description": "(chest"},
            "key 'series_description': not a valid regular expression",
        ),
        ({"body_part": [1]}, "key 'body_part': a string or a list of strings expected"),
        ({"orientation": ["diagonal"]}, "key 'orientation': unknown orientation ['diagonal']"),
        ([], "key '(top)': a selector is a JSON object, not a list"),
        ({}, "an empty selector selects nothing"),
    ],
)
def test_a_bad_selector_is_one_line_naming_the_key(tmp_path, rules, message):
    with pytest.raises(ScandxError) as e:
        _selector(tmp_path, rules)
    assert message in str(e.value) and "selector.json" in str(e.value)
    assert "\n" not in str(e.value)


def test_a_selector_that_is_not_json_is_refused(tmp_path):
    path = tmp_path / "s.json"
    path.write_text("{modality: CT}")
    with pytest.raises(ScandxError, match="not valid JSON"):
        load_selector(path)
