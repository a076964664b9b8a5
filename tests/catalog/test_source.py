"""A catalog + a query + a label CSV as train's --data: the selection file."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from scandx.catalog.build import build_catalog
from scandx.catalog.cli import run_index
from scandx.catalog.query import select_rows
from scandx.errors import ScandxError
from scandx.tasks.classification.data.sources import load_source
from tests.catalog.test_build import index_args


@pytest.fixture(scope="module")
def selection(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every instance labelled by its modality, but two left unlabelled and one empty."""
    work = tmp_path_factory.mktemp("selection")
    build_catalog(archive, work / "cat", workers=1, shard_size=8)
    _, rows = select_rows(work / "cat", None, ["sop_instance_uid", "modality"])
    rows = list(rows)
    with open(work / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["SOP_Instance_UID", "finding"])
        for i, (uid, modality) in enumerate(rows[2:]):
            w.writerow([uid, "" if i == 0 else {"CT": "ct", "MR": "mr"}[modality]])
    sel = work / "sel" / "selection.json"
    argv = ["--query", "rows >= 64", "--labels", str(work / "labels.csv")]
    argv += ["--label-column", "Finding", "--save-selection", str(sel)]
    assert run_index(index_args(str(work / "cat"), *argv)) == 0
    return sel


def test_selection_file_is_relative_to_its_folder(selection: Path) -> None:
    saved = json.loads(selection.read_text())
    assert saved["catalog"] == "../cat" and saved["labels"] == "../labels.csv"
    assert saved["join"] == "sop_instance_uid" and saved["query"] == "rows >= 64"


def test_selection_builds_a_patient_level_manifest(selection: Path) -> None:
    manifest = load_source(selection)
    assert manifest.task == "binary" and manifest.classes == ["ct", "mr"]
    assert len(manifest) == 37 and len(manifest.skipped) == 3
    reasons = sorted(r for _, r in manifest.skipped)
    assert reasons[0].startswith("missing label") and "no label in labels.csv" in reasons[-1]
    catalog = selection.parent.parent / "cat"
    _, rows = select_rows(catalog, None, ["patient"])
    assert {c.patient_id for c in manifest.cases} <= {p for (p,) in rows}
    assert all(Path(c.path).is_file() for c in manifest.cases)


def test_bad_selection_inputs_are_one_line(selection: Path, tmp_path: Path) -> None:
    catalog = selection.parent.parent / "cat"
    labels = selection.parent.parent / "labels.csv"
    with pytest.raises(ScandxError, match="no 'diagnosis' column"):
        run_index(
            index_args(
                str(catalog),
                "--labels",
                str(labels),
                "--label-column",
                "diagnosis",
                "--save-selection",
                str(tmp_path / "s.json"),
            )
        )
    with pytest.raises(ScandxError, match="needs --labels"):
        run_index(index_args(str(catalog), "--save-selection", str(tmp_path / "s.json")))
    assert not (tmp_path / "s.json").exists()


def test_train_on_a_selection(selection: Path, tmp_path: Path) -> None:
    from scandx.cli import main

    run = tmp_path / "run"
    argv = ["train", "--data", str(selection), "--out", str(run)]
    assert main(["-q", *argv, "--time-budget", "3", "--model", "simple-cnn"]) == 0
    assert (run / "train_summary.json").is_file()
    assert len((run / "manifest.csv").read_text().splitlines()) == 38  # 37 cases
    assert "no label in labels.csv" in (run / "skipped.csv").read_text()
