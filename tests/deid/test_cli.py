"""``scandx deid``: exit 0 with a summary line; exit 2 with one line for bad folders."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

from scandx.deid.cli import add_deid_command, run_deid
from scandx.errors import ScandxError
from tests.deid.synthetic import make_file


def _main(argv: list[str]) -> int:
    """``scandx.cli.main`` once the lead has wired ``deid`` in; until then the same
    contract (ScandxError -> its one line, exit 2) around this package's glue."""
    from scandx import cli

    commands = [a for a in cli._parser()._actions if isinstance(a, argparse._SubParsersAction)]
    if any("deid" in a.choices for a in commands):
        return cli.main(argv)
    parser = argparse.ArgumentParser(prog="scandx")
    add_deid_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    try:
        return run_deid(args)
    except ScandxError as e:
        print(f"scandx: error: {e}", file=sys.stderr)
        return 2


def test_deid_writes_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    make_file(tmp_path / "in" / "Doe_John" / "a.dcm", "MKPATIENT02")
    (tmp_path / "in" / "notes.txt").write_text("not DICOM\n")
    out = tmp_path / "export"
    assert _main(["deid", str(tmp_path / "in"), str(out), "--keep-descriptors"]) == 0
    text = capsys.readouterr().out
    assert "wrote 1 de-identified instance(s)" in text and "skipped 1" in text
    assert len(list(out.rglob("*.dcm"))) == 1 and not list(out.rglob("*.txt"))
    assert (tmp_path / "export-mapping" / "uid_mapping.csv").is_file()
    mapping = tmp_path / "keys"
    assert _main(["deid", str(tmp_path / "in"), str(out), "--mapping-dir", str(mapping)]) == 0
    assert (mapping / "patid_mapping.csv").read_text().startswith("id_old,id_new\n")


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing", "input folder not found"),
        ("inside", "output folder is inside the input folder"),
        ("mapping", "may not be inside the output folder"),
    ],
)
def test_bad_folders_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, case: str, expected: str
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    args = {
        "missing": ["deid", str(tmp_path / "nope"), str(tmp_path / "out")],
        "inside": ["deid", str(src), str(src / "out")],
        "mapping": [
            "deid",
            str(src),
            str(tmp_path / "out"),
            "--mapping-dir",
            str(tmp_path / "out" / "m"),
        ],
    }[case]
    assert _main(args) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and "\n" not in err
    assert not (tmp_path / "out").exists() and not (src / "out").exists()
