"""Label vocabulary normalisation shared by every source."""

from __future__ import annotations

from scandx.data.labels import is_missing_label, normalise_labels


def test_spellings_merge_and_missing_is_none():
    v = normalise_labels(["0", "0.0", "1", "1.0", "Lesion", " lesion ", "lesion", "NaN", "", None])
    assert v.labels == ["0", "0", "1", "1", "lesion", "lesion", "lesion", None, None, None]
    assert len(v.notes) == 3


def test_distinct_labels_give_no_notes():
    assert normalise_labels(["normal", "pneumonia", "normal"]).notes == []
    assert is_missing_label(" none ") and not is_missing_label("0")
