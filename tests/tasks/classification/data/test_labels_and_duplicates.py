"""Issue 11: labels that silently change the task, and the same image in two splits."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from scandx.errors import ScandxError
from scandx.tasks.classification.data.sources import load_source
from scandx.tasks.classification.data.splits import assign_splits


def _png(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (12, 12), dtype=np.uint8)).save(path)


def _csv(tmp_path, header, rows, n_images=None):
    for i in range(n_images if n_images is not None else len(rows)):
        _png(tmp_path / f"{i}.png", i)
    (tmp_path / "m.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    return tmp_path / "m.csv"


def test_misspelt_label_column_is_found_not_planned_on_metadata(tmp_path):
    rows = [
        f"{i}.png,{'pneumonia' if i % 2 else 'normal'},{i % 2},{(i // 2) % 2}" for i in range(8)
    ]
    m = load_source(_csv(tmp_path, "path,Label,is_male,smoker", rows))
    assert m.task == "binary" and m.classes == ["normal", "pneumonia"]
    assert m.cases[0].meta["is_male"] == "0"


def test_unknown_label_column_with_0_1_metadata_is_one_clear_error(tmp_path):
    rows = [f"{i}.png,{'pneumonia' if i % 2 else 'normal'},{i % 2},{i // 4}" for i in range(8)]
    with pytest.raises(ScandxError, match=r"m\.csv: no 'label' column.*'Lable', 'is_male'"):
        load_source(_csv(tmp_path, "path,Lable,is_male,smoker", rows))


def test_declared_multilabel_columns_keep_metadata(tmp_path):
    rows = [f"{i}.png,{i % 2},{int(i > 3)},{i % 3}" for i in range(8)]
    m = load_source(_csv(tmp_path, "path,label:effusion,label:nodule,site", rows))
    assert m.task == "multilabel" and m.classes == ["effusion", "nodule"]
    assert m.cases[5].target == (1, 1) and m.cases[5].meta["site"] == "2"


def test_numeric_label_spellings_are_two_classes(tmp_path):
    rows = [f"{i}.png,{['0', '0.0', '1', '1.0'][i % 4]}" for i in range(8)]
    m = load_source(_csv(tmp_path, "path,label", rows))
    assert m.classes == ["0", "1"] and m.task == "binary"
    assert any("'0', '0.0'" in n for n in m.notes)


def test_label_case_and_spaces_merge_with_a_note(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    rows = [f"{i}.png,{['Lesion', 'lesion', ' lesion ', 'normal'][i % 4]}" for i in range(8)]
    m = load_source(_csv(tmp_path, "path,label", rows))
    assert m.classes == ["normal", "lesion"]  # the most frequent spelling names the class
    assert m.class_counts() == {"normal": 2, "lesion": 6}
    assert any("'Lesion', 'lesion' taken as one class 'lesion'" in n for n in m.notes)
    assert "taken as one class" in caplog.text


@pytest.mark.parametrize("missing", ["NaN", "", "nan", "None"])
def test_missing_labels_make_unlabelled_cases(tmp_path, missing):
    rows = [f"{i}.png,{'a' if i % 2 else 'b'}" for i in range(6)]
    rows[2] = f"2.png,{missing}"
    rows[4] = f"4.png,{missing}"
    m = load_source(_csv(tmp_path, "path,label", rows))
    assert sorted(m.classes) == ["a", "b"]  # a missing label is never a class
    assert len(m) == 6 and not m.skipped
    unlabelled = [c for c in m.cases if c.target is None]
    assert len(unlabelled) == 2 and {c.split for c in unlabelled} == {"unlabelled"}
    assert m.summary()["unlabelled"] == 2


def test_partly_missing_multilabel_row_is_refused_naming_the_line(tmp_path):
    rows = ["0.png,1,0", "1.png,0,1", "2.png,,1", "3.png,,"]
    with pytest.raises(ScandxError, match=r"m\.csv: some label cells missing .* line\(s\) 4:"):
        load_source(_csv(tmp_path, "path,label:a,label:b", rows))
    m = load_source(tmp_path / "m.csv", skip_bad=True)  # left out, listed
    assert len(m) == 3 and len(m.skipped) == 1 and len(m.unlabelled()) == 1


def test_same_image_listed_twice_is_one_group_never_in_two_splits(tmp_path):
    rows = [f"{i}.png,{'a' if i % 2 else 'b'}" for i in range(40)]
    rows += [f"{i}.png,{'a' if i % 2 else 'b'}" for i in range(40)]  # every image twice
    m = load_source(_csv(tmp_path, "path,label", rows))
    assert len({c.case_id for c in m.cases}) == 80  # ids stay unique
    assert any("listed more than once" in n for n in m.notes)
    assert m.warnings[0]["code"] == "duplicate_images"
    for seed in range(5):
        assign_splits(m, seed=seed)
        by_path: dict[str, set[str]] = {}
        for c in m.cases:
            by_path.setdefault(c.path, set()).add(c.split)
        assert all(len(s) == 1 for s in by_path.values())
        for c in m.cases:
            c.split = ""


def test_identical_content_under_two_names_and_two_patients_is_one_group(tmp_path):
    rows = [f"{i}.png,{'a' if i % 2 else 'b'},p{i}" for i in range(10)]
    _csv(tmp_path, "path,label,patient_id", rows)
    (tmp_path / "copy.png").write_bytes((tmp_path / "3.png").read_bytes())
    rows.append("copy.png,a,q99")
    (tmp_path / "m.csv").write_text("path,label,patient_id\n" + "\n".join(rows) + "\n")
    m = load_source(tmp_path / "m.csv")
    by_path = {c.path.rsplit("/", 1)[1]: c for c in m.cases}
    assert by_path["copy.png"].patient_id == by_path["3.png"].patient_id
    assert "under two patient ids" in " ".join(m.notes)


def test_one_image_with_two_labels_names_both_lines(tmp_path):
    rows = [f"{i}.png,{'a' if i % 2 else 'b'}" for i in range(6)] + ["3.png,b"]
    with pytest.raises(ScandxError, match=r"m\.csv:5 as 'a' and at .*m\.csv:8 as 'b'"):
        load_source(_csv(tmp_path, "path,label", rows, n_images=6))


def test_same_image_in_two_class_folders_is_refused(tmp_path):
    _png(tmp_path / "d" / "a" / "x.png", 1)
    _png(tmp_path / "d" / "a" / "y.png", 2)
    _png(tmp_path / "d" / "b" / "z.png", 3)
    (tmp_path / "d" / "b" / "x_copy.png").write_bytes((tmp_path / "d" / "a" / "x.png").read_bytes())
    with pytest.raises(ScandxError, match="x.png as 'a' and at .*x_copy.png as 'b'"):
        load_source(tmp_path / "d")
