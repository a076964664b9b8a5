"""Small samples must not look reassuring (issue 11): calibration, operating points and
intervals are refused or replaced below the counts that support them, and the report,
metrics.json and the model card say so."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from scandx.core.stats import wilson_interval
from scandx.tasks.classification.evaluation.calibration import apply_calibration, fit_calibration
from scandx.tasks.classification.evaluation.curves import (
    choose_operating_points,
    operating_point_table,
)
from scandx.tasks.classification.evaluation.html_report import warnings_box
from scandx.tasks.classification.evaluation.model_card import _evaluation_lines
from scandx.tasks.classification.evaluation.report import collect_warnings, evaluate_predictions


@pytest.mark.parametrize("k,n", [(3, 3), (0, 10), (7, 20), (1, 2), (50, 100), (29, 30)])
def test_wilson_interval_matches_scipy(k, n):
    ci = binomtest(k, n).proportion_ci(method="wilson")
    np.testing.assert_allclose(wilson_interval(k, n), (ci.low, ci.high), atol=1e-12)


def test_wilson_hand_worked():
    # 3 of 3: centre (1 + z^2/6) / (1 + z^2/3), z = 1.959964 -> lower bound 0.43850
    assert wilson_interval(3, 3)[0] == pytest.approx(0.438503, abs=1e-6)
    assert wilson_interval(3, 3)[1] == 1.0


def test_temperature_is_not_fitted_on_six_images():
    # 6 validation images, a confident network with one mistake: NLL alone would pick a
    # huge temperature and squeeze every probability towards 0.5
    logits = np.array([[4.0, -4.0], [3.0, -3.0], [-3.0, 3.0], [-4.0, 4.0], [3.5, -3.5], [-3, 3]])
    y = np.array([0, 1, 1, 1, 0, 0])
    cal = fit_calibration("binary", logits, y)
    assert cal["method"] == "none" and "validation split has 6 cases" in cal["note"]
    import torch

    z = torch.as_tensor(logits)
    assert torch.equal(apply_calibration(z, cal), z)


def test_temperature_is_fitted_with_enough_cases():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    logits = np.stack([-(y * 2 - 1) * 3.0, (y * 2 - 1) * 3.0], 1) + rng.normal(0, 2, (200, 2))
    cal = fit_calibration("binary", logits, y)
    assert cal["method"] == "temperature" and 0.1 < cal["temperature"] < 10


def test_operating_points_with_three_positives_are_refused_not_all_the_same():
    y = np.array([1, 1, 1] + [0] * 30)
    score = np.r_[0.9, 0.8, 0.7, np.linspace(0.0, 0.6, 30)]
    chosen = choose_operating_points(y, score, youden=0.65)
    assert "sensitivity_90" not in chosen and "sensitivity_95" not in chosen
    assert any("3 positive" in n for n in chosen["notes"])
    assert {"specificity_90", "specificity_95", "youden"} <= set(chosen)


def test_coinciding_operating_points_are_reported_once_with_a_note():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    score = np.array([0.9, 0.8, 0.7, 0.1, 0.2, 0.3, 0.4, 0.5])
    rows = operating_point_table(
        y, score, [str(i) for i in range(8)], {"a": 0.6, "b": 0.6, "youden": 0.6}, n_boot=20
    )
    assert len(rows) == 1 and rows[0]["same_as"] == ["b", "youden"]
    assert "reported once" in rows[0]["note"]
    # perfect separation on 3 positives: not "1.000 (1.000-1.000)"
    sens = rows[0]["sensitivity"]
    assert sens["value"] == 1.0 and sens["ci_method"] == "wilson"
    assert sens["ci95"][0] == pytest.approx(0.438503, abs=1e-6)


def test_three_positives_give_wilson_intervals_and_no_auc_interval():
    y = np.array([1, 1, 1] + [0] * 40)
    p1 = np.r_[0.9, 0.8, 0.95, np.linspace(0.01, 0.4, 40)]
    probs = np.stack([1 - p1, p1], 1)
    m = evaluate_predictions(
        "binary", ["neg", "pos"], y, probs, {"positive": 0.5}, [str(i) for i in range(43)], 200
    )
    assert m["sensitivity"]["value"] == 1.0
    assert m["sensitivity"]["ci95"][0] < 0.5 and m["sensitivity"]["ci_method"] == "wilson"
    assert m["sensitivity"]["count"] == [3, 3]
    assert m["auc"]["value"] == 1.0 and m["auc"]["ci95"] == [None, None]
    assert "3 positive" in m["auc"]["ci_note"]
    assert any("Wilson" in w for w in m["warnings"])
    assert any("AUC interval refused" in w for w in m["warnings"])
    for key in ("accuracy", "sensitivity", "specificity", "ppv", "npv"):
        lo, hi = m[key]["ci95"]
        assert lo is not None and hi > lo, key  # never zero width


def test_a_split_without_positives_warns_and_leaves_auc_and_sensitivity_out():
    y = np.zeros(50, int)
    p1 = np.linspace(0.01, 0.3, 50)
    probs = np.stack([1 - p1, p1], 1)
    m = evaluate_predictions(
        "binary", ["neg", "pos"], y, probs, {"positive": 0.5}, [str(i) for i in range(50)], 100
    )
    assert m["accuracy"]["value"] == 1.0
    assert m["accuracy"]["ci95"][0] < 1.0  # not [1.000, 1.000]
    for key in ("auc", "sensitivity"):
        assert m[key]["value"] is None and "not measurable" in m[key]["note"]
    warnings = collect_warnings(m)
    assert any("no cases of 'pos'" in w for w in warnings)
    box = warnings_box(warnings)
    assert "role='alert'" in box and "no cases of" in box
    card = "\n".join(_evaluation_lines({"test": {**m, "cases": 50, "patients": 50}}))
    assert "**Warning (test)**" in card and "no cases of" in card


def test_calibration_refusal_reaches_the_warnings():
    m = {"calibration": {"method": "none", "note": "not calibrated: too few"}}
    assert collect_warnings(m) == ["Calibration: not calibrated: too few."]


def test_only_refused_or_collapsed_operating_points_reach_the_warnings():
    two = {"rule": "sensitivity_95", "same_as": ["youden"], "note": "two rules, one threshold"}
    many = {"rule": "a", "same_as": ["b", "c"], "note": "three rules, one threshold"}
    refused = {"rule": "sensitivity_90", "refused": "too few", "note": "too few"}
    m = {"operating_points": {"pos": [two, many, refused]}}
    assert collect_warnings(m) == [
        "Operating points for pos: three rules, one threshold",
        "Operating points for pos: too few",
    ]
