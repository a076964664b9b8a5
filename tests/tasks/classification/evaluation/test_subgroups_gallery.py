"""Subgroup metrics, age bands, gallery selection, and HTML escaping of data-derived text."""

from __future__ import annotations

import numpy as np
import pytest

from scandx.errors import ScandxError
from scandx.tasks.classification.data.manifest import Case
from scandx.tasks.classification.evaluation.metrics import roc_auc
from scandx.tasks.classification.evaluation.subgroups import (
    MISSING,
    age_band,
    resolve_columns,
    subgroup_metrics,
    subgroup_value,
)
from scandx.tasks.classification.explain.gallery import select_gallery


@pytest.mark.parametrize(
    ("value", "band"),
    [
        ("045Y", "40-59"),
        ("006M", "0-17"),
        ("003W", "0-17"),
        ("017Y", "0-17"),
        ("018Y", "18-39"),
        ("80", "80+"),
        (67.5, "60-79"),
        ("", MISSING),
        ("unknown", MISSING),
    ],
)
def test_age_bands_from_dicom_age_strings_and_numbers(value, band):
    assert age_band(value) == band


def _cases(n: int, rng: np.random.Generator) -> list[Case]:
    sites = ["A", "B", "C"]
    return [
        Case(
            case_id=f"c{i}",
            path=f"c{i}.png",
            target=0,
            patient_id=f"p{i // 2}",
            meta={
                "site": sites[i % 3],
                **({"age": str(int(rng.integers(1, 95)))} if i % 4 else {}),
            },
        )
        for i in range(n)
    ]


def test_resolve_columns_requested_default_and_unknown():
    cases = _cases(12, np.random.default_rng(0))
    assert resolve_columns(cases, ["site", "age_group"]) == ["site", "age_group"]
    assert resolve_columns(cases, None) == ["age_group"]  # DICOM defaults present in the data
    with pytest.raises(ScandxError, match=r"no metadata column sex.*has: age, age_group, site"):
        resolve_columns(cases, ["site", "sex"])
    assert subgroup_value(cases[0], "age_group") == MISSING  # no age on every 4th case


def test_subgroup_metrics_equal_metrics_on_each_subset():
    rng = np.random.default_rng(1)
    cases = _cases(240, rng)
    y = (rng.random(240) < 0.4).astype(int)
    p1 = np.clip(0.3 * y + rng.random(240) * 0.7, 0, 1)
    probs = np.stack([1 - p1, p1], 1)
    out = subgroup_metrics(
        "binary", ["neg", "pos"], y, probs, {"positive": 0.5}, cases, ["site"], n_boot=100
    )
    rows = {r["value"]: r for r in out["site"]}
    assert set(rows) == {"A", "B", "C"}
    for site, r in rows.items():
        idx = np.array([c.meta["site"] == site for c in cases])
        assert r["cases"] == idx.sum() == 80
        assert r["positives"] == y[idx].sum()
        assert r["auc"]["value"] == pytest.approx(roc_auc(y[idx] == 1, p1[idx]), abs=1e-6)
        sens = np.mean(p1[idx & (y == 1)] >= 0.5)
        assert r["sensitivity"]["value"] == pytest.approx(sens, abs=1e-6)
        lo, hi = r["auc"]["ci95"]
        assert lo <= r["auc"]["value"] <= hi


def test_gallery_selection_binary_hand_worked():
    y = np.array([1, 1, 0, 0, 1, 0])
    p1 = np.array([0.9, 0.6, 0.7, 0.1, 0.2, 0.3])
    dec = (p1 >= 0.5).astype(int)
    sel = select_gallery("binary", y, np.stack([1 - p1, p1], 1), dec, per_category=2)
    assert sel["true positive"] == [(0, 1), (1, 1)]  # most confident first
    assert sel["false positive"] == [(2, 1)]
    assert sel["false negative"] == [(4, 1)]
    assert sel["true negative"] == [(3, 1), (5, 1)]


def test_gallery_selection_multiclass_and_multilabel():
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    y = np.array([0, 2, 0, 2])
    sel = select_gallery("multiclass", y, probs, probs.argmax(1), per_category=4)
    assert sel["correct"] == [(0, 0), (3, 2), (2, 0)]
    assert sel["wrong"] == [(1, 1)]
    yl = np.array([[1, 0], [0, 1]])
    pl = np.array([[0.9, 0.6], [0.2, 0.4]])
    sel = select_gallery("multilabel", yl, pl, (pl >= 0.5).astype(int))
    assert sel["true positive"] == [(0, 0)]
    assert sel["false positive"] == [(0, 1)]
    assert sel["false negative"] == [(1, 1)]
    assert sel["true negative"] == [(1, 0)]
