"""core/cross_validation.fold_manifest: fold i validates, the others train; unlabelled
cases never become training or validation cases, and a validation patient's leave."""

from __future__ import annotations

from dataclasses import dataclass, field

from scandx.core.cross_validation import fold_manifest


@dataclass
class _Case:
    case_id: str
    patient_id: str
    split: str


@dataclass
class _Manifest:
    cases: list[_Case] = field(default_factory=list)


def test_a_fold_keeps_unlabelled_cases_apart_and_drops_its_own_patients():
    m = _Manifest(
        [
            _Case("a", "p1", "train"),
            _Case("b", "p2", "train"),
            _Case("c", "p3", "test"),
            _Case("u1", "p1", "unlabelled"),  # the scan of a patient validated in fold 0
            _Case("u2", "p2", "unlabelled"),
            _Case("u3", "p9", "unlabelled"),  # a patient with no labelled case
        ]
    )
    folds = {"p1": 0, "p2": 1}
    f0 = {c.case_id: c.split for c in fold_manifest(m, folds, 0).cases}
    assert f0 == {"a": "val", "b": "train", "c": "test", "u2": "unlabelled", "u3": "unlabelled"}
    f1 = {c.case_id: c.split for c in fold_manifest(m, folds, 1).cases}
    assert f1 == {"a": "train", "b": "val", "c": "test", "u1": "unlabelled", "u3": "unlabelled"}
    assert [c.split for c in m.cases][3:] == ["unlabelled"] * 3  # the source is not changed
