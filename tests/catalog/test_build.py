"""Indexing: one row per instance, headers only, pseudonymised patients, bad input listed."""

from __future__ import annotations

import argparse
import json
import os
import tracemalloc
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from scandx.catalog.build import build_catalog
from scandx.catalog.cli import add_index_command, run_index
from scandx.catalog.headers import HeaderProblem, read_row
from scandx.core.privacy import is_pseudonym
from scandx.errors import ScandxError
from tests.catalog.conftest import add_bad_input, add_bad_series, copy_tree, templates


def table(catalog: Path, pattern: str = "part-*.parquet") -> list[dict]:
    rows = [r for p in sorted(catalog.glob(pattern)) for r in pq.read_table(p).to_pylist()]
    return sorted(rows, key=lambda r: r["path"])


def index_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_index_command(parser.add_subparsers(dest="command"))
    return parser.parse_args(["index", *argv])


def test_one_row_per_instance_patients_pseudonymised(archive: Path, tmp_path: Path) -> None:
    summary = build_catalog(archive, tmp_path / "cat", workers=1, shard_size=8)
    assert (summary.files, summary.instances, summary.failed_files) == (40, 40, 0)
    assert summary.series_problems == 0
    rows = table(tmp_path / "cat")
    assert len({r["sop_instance_uid"] for r in rows}) == 40
    first = rows[0]
    assert not Path(first["path"]).is_absolute() and (archive / first["path"]).is_file()
    assert first["modality"] in ("CT", "MR") and first["rows"] in (64, 128)
    assert first["transfer_syntax_uid"] and first["file_size"] > 0
    assert len(first["image_orientation"]) == 6 and first["pixel_spacing_row"] > 0
    assert all(is_pseudonym(r["patient"]) for r in rows)
    assert len({r["patient"] for r in rows}) > 1
    text = json.dumps(rows, default=str)
    assert "SYN0" not in text and "Synthetic" not in text  # no PatientID, no name
    manifest = json.loads((tmp_path / "cat" / "manifest.json").read_text())
    assert manifest["root"] == str(archive) and manifest["instances"] == 40
    assert "patient" in manifest["columns"] and "path" in manifest["columns"]


def test_bad_input_is_listed_and_the_walk_goes_on(
    archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root = copy_tree(archive, tmp_path / "dicom")
    expected = add_bad_input(root)
    add_bad_series(root)
    assert run_index(index_args(str(root), "--out", str(tmp_path / "cat"), "--workers", "1")) == 0
    line = capsys.readouterr().out.strip()
    assert f"{len(expected)} failed" in line and "1 series with inconsistent geometry" in line
    failures = {r["path"]: r for r in table(tmp_path / "cat", "failures/*.parquet")}
    for path, word in expected.items():
        assert word in failures[path]["reason"], (path, failures[path]["reason"])
    series = failures["mixed"]
    assert series["kind"] == "series" and "different sizes (128x128, 64x64)" in series["reason"]
    assert "repeat a slice position" in series["reason"]
    assert len(table(tmp_path / "cat")) == 43  # the mixed series' rows stay, flagged


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 file: no failure to list")
def test_unreadable_file_is_listed(archive: Path, tmp_path: Path) -> None:
    root = copy_tree(archive, tmp_path / "dicom")
    locked = next(root.rglob("*.dcm"))
    locked.chmod(0)
    build_catalog(root, tmp_path / "cat", workers=1)
    reasons = {r["path"]: r["reason"] for r in table(tmp_path / "cat", "failures/*.parquet")}
    assert "Permission denied" in reasons[locked.relative_to(root).as_posix()]


def test_a_lying_element_length_allocates_nothing(tmp_path: Path) -> None:
    import pydicom

    ds = pydicom.dcmread(templates()[1])
    ds.add_new(0x00091010, "OB", b"\0" * 64)
    ds.save_as(tmp_path / "x.dcm", enforce_file_format=True)
    data = bytearray((tmp_path / "x.dcm").read_bytes())
    at = data.index(b"\x09\x00\x10\x10OB")
    data[at + 8 : at + 12] = (0xFFFFFFF0).to_bytes(4, "little")
    (tmp_path / "x.dcm").write_bytes(bytes(data))
    tracemalloc.start()
    try:
        read_row(tmp_path / "x.dcm", "x.dcm", len(data), 0)
    except HeaderProblem as e:
        assert "DICOM" in str(e) or "truncated" in str(e)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 20_000_000


@pytest.mark.parametrize("case", ["missing", "empty", "file"])
def test_no_usable_root_is_one_clear_error(case: str, tmp_path: Path) -> None:
    root = tmp_path / "dicom"
    if case == "empty":
        root.mkdir()
    elif case == "file":
        root.write_text("x")
    with pytest.raises(ScandxError) as err:
        run_index(index_args(str(root), "--out", str(tmp_path / "cat")))
    assert str(root) in str(err.value) and "\n" not in str(err.value)


def test_out_must_be_a_catalog_or_new(archive: Path, tmp_path: Path) -> None:
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "thesis.docx").write_text("x")
    with pytest.raises(ScandxError, match="not a scandx catalog folder"):
        build_catalog(archive, tmp_path / "cat", workers=1)
    build_catalog(archive, tmp_path / "cat2", workers=1)
    with pytest.raises(ScandxError, match="catalog of another root"):
        build_catalog(tmp_path, tmp_path / "cat2", workers=1)


def test_pool_gives_the_serial_catalog(archive: Path, tmp_path: Path) -> None:
    build_catalog(archive, tmp_path / "serial", workers=1, shard_size=6)
    build_catalog(archive, tmp_path / "pool", workers=2, shard_size=6)
    assert table(tmp_path / "pool") == table(tmp_path / "serial")
