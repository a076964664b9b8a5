"""Cases listed in a CSV table or a JSON spec (per-case folders with several modalities)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scandx.cli import main
from scandx.core.privacy import pseudonym
from scandx.errors import ScandxError
from scandx.tasks.segmentation.sources import is_seg_source, load_seg_source
from scandx.tasks.segmentation.synthetic import make_ellipse_folders
from tests.conftest import needs_shared

EXAMPLES = Path(__file__).parents[3] / "examples"


def _table(data: Path, rows: list[str], name: str = "cases.csv") -> Path:
    path = data / name
    path.write_text("\n".join(rows) + "\n")
    return path


def _ellipse_rows(data: Path, n: int) -> list[str]:
    rows = ["case_id,split,image,label"]
    for i, img in enumerate(sorted((data / "images").iterdir())[:n]):
        split = "test" if i < 3 else ""
        rows.append(f"{img.stem},{split},images/{img.name},masks/{img.name}")
    return rows


@needs_shared
def test_the_brats_table_lists_the_same_cases_as_the_folder_spec():
    folders = load_seg_source(EXAMPLES / "brats2013.json")
    for spec in ("brats2013.csv", "brats2013_table.json"):
        table = load_seg_source(EXAMPLES / spec)
        assert is_seg_source(EXAMPLES / spec)
        key = [(c.case_id, c.split, c.images, c.label, c.fov) for c in table.cases]
        assert key == [(c.case_id, c.split, c.images, c.label, c.fov) for c in folders.cases]
    named = load_seg_source(EXAMPLES / "brats2013_table.json")
    assert named.labels == folders.labels and named.regions == folders.regions
    assert named.in_split("train")[0].patient_id == pseudonym("pat0005")  # keyed, never raw
    bare = load_seg_source(EXAMPLES / "brats2013.csv")  # label values read from the labels
    assert bare.labels == {0: "background", 1: "label 1", 2: "label 2", 3: "label 3", 4: "label 4"}


def test_a_classification_csv_is_not_taken_for_a_segmentation_table(tmp_path):
    path = _table(tmp_path, ["path,label,patient_id", "a.png,1,p1"])
    assert not is_seg_source(path)


def test_a_csv_table_trains_evaluates_on_its_test_rows(tmp_path):
    data = make_ellipse_folders(tmp_path / "f", n=12, size=32)
    table = _table(data, _ellipse_rows(data, 12))
    run = tmp_path / "run"
    assert main(["-q", "train", "--data", str(table), "--out", str(run), "--time-budget", "8"]) == 0
    assert main(["-q", "evaluate", str(run), "--data", str(table), "--split", "test"]) == 0
    metrics = json.loads((run / "eval" / "test" / "metrics.json").read_text())
    assert metrics["cases"] == 3 and set(metrics["dice"]) == {"value", "ci95"}


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda r: r[:2] + [r[2].replace("images/", "nowhere/")] + r[3:], "image file not found"),
        (  # a train row without a label (an empty split would make it unlabelled)
            lambda r: r[:4] + [r[4].replace(",,", ",train,").rsplit(",", 1)[0] + ","] + r[5:],
            "missing label",
        ),
        (lambda r: r[:2] + [r[2].replace(",test,", ",holdout,")] + r[3:], "unknown split"),
        (lambda r: r + [r[-1]], "listed twice"),
        (lambda r: [r[0].replace("label", "mask_file")] + r[1:], "needs 'image'"),
    ],
)
def test_bad_tables_are_one_line_naming_the_case_and_write_nothing(tmp_path, capsys, edit, message):
    data = make_ellipse_folders(tmp_path / "f", n=6, size=32)
    table = _table(data, edit(_ellipse_rows(data, 6)))
    if message == "needs 'image'":  # no longer a segmentation table: load it directly
        with pytest.raises(ScandxError, match=message):
            load_seg_source(table)
        return
    run = tmp_path / "run"
    assert main(["-q", "train", "--data", str(table), "--out", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "cases.csv:" in err[0]
    assert not run.exists()
