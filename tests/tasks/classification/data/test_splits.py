"""Splits: patient-level, stratified, seeded; given splits kept; leakage refused."""

from __future__ import annotations

from collections import Counter

import pytest

from scandx.errors import ScandxError
from scandx.tasks.classification.data.manifest import Case, Manifest
from scandx.tasks.classification.data.splits import assign_splits


def _manifest(n_patients=200, images=3, positive_every=4):
    cases = []
    for p in range(n_patients):
        label = int(p % positive_every == 0)
        for i in range(images):
            cases.append(Case(f"p{p}_{i}", f"p{p}", f"/x/{p}_{i}.png", label))
    return Manifest("binary", ["neg", "pos"], cases)


def test_no_patient_in_two_splits_and_strata_kept():
    m = assign_splits(_manifest(), seed=3)
    splits = {}
    for c in m.cases:
        assert splits.setdefault(c.patient_id, c.split) == c.split
    for s in ("train", "val", "test"):
        cases = m.in_split(s)
        rate = sum(c.target for c in cases) / len(cases)
        assert abs(rate - 0.25) < 0.05, (s, rate)
    n = Counter(c.split for c in m.cases)
    assert abs(n["val"] / len(m) - 0.15) < 0.03 and abs(n["test"] / len(m) - 0.15) < 0.03


def test_seeded():
    a = [c.split for c in assign_splits(_manifest(), seed=1).cases]
    b = [c.split for c in assign_splits(_manifest(), seed=1).cases]
    c = [c.split for c in assign_splits(_manifest(), seed=2).cases]
    assert a == b and a != c


def test_given_train_test_gets_val_from_train_only():
    m = _manifest()
    for c in m.cases:
        c.split = "test" if int(c.patient_id[1:]) < 40 else "train"
    test_before = {c.case_id for c in m.cases if c.split == "test"}
    assign_splits(m, seed=0)
    assert {c.case_id for c in m.in_split("test")} == test_before
    assert m.in_split("val")


def test_given_split_with_patient_in_two_splits_is_refused():
    m = _manifest(n_patients=4)
    m.cases[0].split, m.cases[1].split = "train", "test"
    with pytest.raises(ScandxError, match="appears in both"):
        assign_splits(m)


def test_rare_class_with_two_patients_gives_a_machine_readable_warning():
    """Issue 11: 1,000 vs 2 images put both positives in train, with no word."""
    cases = [Case(f"n{i}", f"n{i}", f"/x/n{i}.png", 0) for i in range(1000)]
    cases += [Case(f"p{i}", f"p{i}", f"/x/p{i}.png", 1) for i in range(2)]
    m = assign_splits(Manifest("binary", ["neg", "pos"], cases), seed=0)
    missing = {
        (w["class_name"], w["split"]) for w in m.warnings if w["code"] == "class_missing_from_split"
    }
    held_out = {s for s in ("val", "test") if not any(c.target == 1 for c in m.in_split(s))}
    assert held_out and {("pos", s) for s in held_out} <= missing


def test_class_with_three_patient_groups_reaches_val_and_test():
    """Patients whose images are mostly another class still carry a rare class to val/test."""
    cases = [Case(f"n{i}", f"n{i}", f"/x/n{i}.png", 0) for i in range(300)]
    for p in range(3):  # each rare patient: one rare image, two common ones
        for j, label in enumerate((2, 1, 1)):
            cases.append(Case(f"r{p}_{j}", f"r{p}", f"/x/r{p}_{j}.png", label))
    cases += [Case(f"m{i}", f"m{i}", f"/x/m{i}.png", 1) for i in range(100)]
    for seed in range(4):
        for c in cases:
            c.split = ""
        m = assign_splits(Manifest("multiclass", ["a", "b", "c"], cases), seed=seed)
        for split in ("train", "val", "test"):
            assert any(c.target == 2 for c in m.in_split(split)), (seed, split)
        assert not [w for w in m.warnings if w["code"] == "class_missing_from_split"]
