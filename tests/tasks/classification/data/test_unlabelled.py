"""Issue 15: unlabelled cases (an empty CSV label, an unlabelled/ folder) and
--labelled-fraction: training images only, labelled splits unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from scandx.errors import ScandxError
from scandx.tasks.classification.data.sources import load_source
from scandx.tasks.classification.data.splits import assign_splits, select_labelled
from scandx.tasks.classification.runs import apply_run_splits


def _png(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (12, 12), dtype=np.uint8)).save(path)


def _splits(m):
    return {c.case_id: c.split for c in m.cases if c.target is not None}


def _folder(root, n=20, unlabelled=0, name="unlabelled", offset=0):
    for i in range(n):
        _png(root / ("a" if i % 2 else "b") / f"{offset + i}.png", offset + i)
    for i in range(unlabelled):
        _png(root / name / f"u{i}.png", 1000 + i)
    return root


@pytest.mark.parametrize("name", ["unlabelled", "unlabeled", "Unlabelled"])
def test_unlabelled_folder_is_no_class_and_leaves_labelled_splits_alone(tmp_path, name):
    plain = assign_splits(load_source(_folder(tmp_path / "p", 30)), seed=3)
    more = assign_splits(load_source(_folder(tmp_path / "u", 30, 7, name)), seed=3)
    assert more.classes == plain.classes and len(more.unlabelled()) == 7
    assert {c.split for c in more.unlabelled()} == {"unlabelled"}
    assert _splits(more) == _splits(plain)  # same content ids, same splits
    assert more.summary()["unlabelled"] == 7 and "unlabelled" not in more.summary()["per_split"]


def test_unlabelled_folder_beside_split_folders(tmp_path):
    for k, s in enumerate(("train", "val", "test")):
        _folder(tmp_path / s, 6, offset=100 * k)
    _png(tmp_path / "unlabelled" / "x.png", 99)
    _png(tmp_path / "test" / "unlabelled" / "y.png", 98)  # held out: never trained on
    m = assign_splits(load_source(tmp_path))
    assert [c.split for c in m.unlabelled()] == ["unlabelled"]
    assert any("held-out split" in r for _, r in m.skipped)


def test_csv_unlabelled_rows_leave_labelled_splits_alone(tmp_path):
    lines = [f"{i}.png,{'a' if i % 2 else 'b'}" for i in range(30)]
    for i in range(40):
        _png(tmp_path / f"{i}.png", i)
    (tmp_path / "l.csv").write_text("path,label\n" + "\n".join(lines) + "\n")
    extra = [f"{i}.png," for i in range(30, 40)]
    (tmp_path / "u.csv").write_text("path,label\n" + "\n".join(lines + extra) + "\n")
    plain = assign_splits(load_source(tmp_path / "l.csv"), seed=1)
    more = assign_splits(load_source(tmp_path / "u.csv"), seed=1)
    assert _splits(more) == _splits(plain) and len(more.in_split("unlabelled")) == 10


def test_unlabelled_image_of_a_held_out_patient_is_left_out(tmp_path):
    rows = [f"{i}.png,{'a' if i % 2 else 'b'},P{i}" for i in range(30)]
    rows += [f"{30 + i}.png,,P{i}" for i in range(30)]  # one unlabelled image per patient
    for i in range(60):
        _png(tmp_path / f"{i}.png", i)
    (tmp_path / "m.csv").write_text("path,label,patient_id\n" + "\n".join(rows) + "\n")
    m = assign_splits(load_source(tmp_path / "m.csv"), seed=0)
    train = {c.patient_id for c in m.in_split("train")}
    assert {c.patient_id for c in m.in_split("unlabelled")} == train  # the others left out
    assert len(m.unlabelled()) == len(train) and any("validation/test" in n for n in m.notes)


@pytest.mark.parametrize("layout", ["csv", "folder"])
def test_no_labelled_case_is_one_clear_error(tmp_path, layout):
    if layout == "csv":
        for i in range(3):
            _png(tmp_path / f"{i}.png", i)
        (tmp_path / "m.csv").write_text("path,label\n0.png,\n1.png,NaN\n2.png,None\n")
        src = tmp_path / "m.csv"
    else:
        src = _folder(tmp_path / "f", 0, 3)
    with pytest.raises(ScandxError, match="no labelled case among 3 image"):
        load_source(src)


def test_class_with_only_unlabelled_images_is_an_error(tmp_path):
    rows = ["0.png,a", "1.png,a", "2.png,"]
    for i in range(3):
        _png(tmp_path / f"{i}.png", i)
    (tmp_path / "m.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(ScandxError, match="only one class"):
        load_source(tmp_path / "m.csv")


def test_labelled_fraction_keeps_a_seeded_stratified_share_of_train(tmp_path):
    src = _folder(tmp_path / "f", 80)

    def select(fraction, seed):
        m = assign_splits(load_source(src), seed=0)
        held = {c.case_id: c.split for c in m.cases if c.split in ("val", "test")}
        note = select_labelled(m, fraction, seed)
        assert {c.case_id: c.split for c in m.cases if c.split in ("val", "test")} == held
        return m, note

    full, _ = select(1.0, 0)
    m, note = select(0.25, 0)
    n_train = len(full.in_split("train"))
    kept = m.in_split("train")
    assert len(kept) == round(n_train / 2 * 0.25) * 2  # a quarter of each class
    assert m.class_counts("train")["a"] == m.class_counts("train")["b"]
    assert len(m.in_split("unlabelled")) == n_train - len(kept)
    assert f"labels kept for {len(kept)} of {n_train} training patients" in note
    again, _ = select(0.25, 0)
    other, _ = select(0.25, 1)
    assert _splits(again) == _splits(m) and _splits(other) != _splits(m)
    tiny, _ = select(0.001, 0)  # at least one patient per class
    assert tiny.class_counts("train") == {"b": 1, "a": 1}


def test_run_splits_hide_the_labels_the_run_held_unlabelled(tmp_path):
    src = _folder(tmp_path / "f", 40)
    m = assign_splits(load_source(src), seed=0)
    select_labelled(m, 0.5, 0)
    m.to_csv(tmp_path / "manifest.csv")
    again = load_source(src)  # every label, as the source has them
    apply_run_splits(again, tmp_path / "manifest.csv", strict=True)
    assert _splits(again) == _splits(m)
    assert {c.case_id for c in again.unlabelled()} == {c.case_id for c in m.unlabelled()}
