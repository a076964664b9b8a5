"""Unusable segmentation cases: one clear line and nothing written, or with --skip-bad
left out and listed in skipped.csv (train, evaluate, predict)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

from scandx.cli import main
from scandx.core.privacy import file_ref, pseudonym
from scandx.tasks.segmentation.synthetic import make_ellipse_folders


def _data(tmp_path: Path) -> tuple[Path, Path]:
    """12 ellipse cases listed in a table, the first 3 for test; case c004's mask has the
    wrong shape and c005's image is a truncated PNG."""
    data = make_ellipse_folders(tmp_path / "f", n=12, size=32)
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(data / "masks" / "c004.png")
    png = data / "images" / "c005.png"
    png.write_bytes(png.read_bytes()[:60])
    rows = ["case_id,split,image,label"]
    for i, img in enumerate(sorted((data / "images").iterdir())):
        rows.append(f"{img.stem},{'test' if i < 3 else ''},images/{img.name},masks/{img.name}")
    table = data / "cases.csv"
    table.write_text("\n".join(rows) + "\n")
    return data, table


def _skipped(folder: Path) -> dict[str, str]:
    with open(folder / "skipped.csv") as f:
        return {r["file"]: r["reason"] for r in csv.DictReader(f)}


def _case(name: str) -> str:
    return pseudonym(name, "case")  # case ids reach outputs as keyed pseudonyms


def test_bad_training_cases_stop_the_run_or_are_skipped(tmp_path, capsys):
    data, table = _data(tmp_path)
    run = tmp_path / "run"
    assert main(["-q", "train", "--data", str(table), "--out", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "c004" in err[0] and not run.exists()
    args = ["-q", "train", "--data", str(table), "--out", str(run), "--time-budget", "6"]
    assert main([*args, "--skip-bad"]) == 0
    skipped = _skipped(run)
    assert set(skipped) == {_case("c004"), _case("c005")}
    assert "mask shape (20, 20) differs" in skipped[_case("c004")]
    cases = (run / "manifest.csv").read_text()
    assert _case("c004") not in cases and _case("c005") not in cases


def test_a_bad_test_case_keeps_the_previous_evaluation_or_is_skipped(tmp_path, capsys):
    data, table = _data(tmp_path)
    run = tmp_path / "run"
    args = ["-q", "train", "--data", str(table), "--out", str(run), "--time-budget", "6"]
    assert main([*args, "--skip-bad"]) == 0
    evaluate = ["-q", "evaluate", str(run), "--data", str(table), "--bootstrap", "100"]
    assert main(evaluate) == 0
    first = (run / "eval" / "test" / "metrics.json").read_text()
    png = data / "images" / "c001.png"  # a test case goes bad after the first evaluation
    png.write_bytes(png.read_bytes()[:60])
    assert main(evaluate) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "c001" in err[0]
    assert (run / "eval" / "test" / "metrics.json").read_text() == first  # untouched
    assert not list((run / "eval").glob(".*partial"))
    assert main([*evaluate, "--skip-bad"]) == 0
    m = json.loads((run / "eval" / "test" / "metrics.json").read_text())
    assert m["cases"] == 2 and m["skipped"] == 1
    assert set(_skipped(run / "eval" / "test")) == {_case("c001")}
    assert sorted(p.name for p in (run / "eval" / "test" / "masks").iterdir()) == sorted(
        [f"{_case('c000')}.png", f"{_case('c002')}.png"]
    )
    out = tmp_path / "pred"
    files = [str(data / "images" / n) for n in ("c000.png", "c001.png")]
    assert main(["-q", "predict", str(run), *files, "--out", str(out), "--skip-bad"]) == 0
    assert (out / f"{file_ref(files[0])}.png").exists()
    assert set(_skipped(out)) == {file_ref(files[1])}


def test_a_single_labelled_case_is_one_line_not_a_traceback(tmp_path, capsys):
    data = make_ellipse_folders(tmp_path / "one", n=1, size=32)
    run = tmp_path / "run"
    assert main(["-q", "train", "--data", str(data), "--out", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "at least 2 labelled training patients" in err[0]
    assert not run.exists()
