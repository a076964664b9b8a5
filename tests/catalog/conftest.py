"""Small DICOM trees for the catalog tests: good instances with fresh UIDs, and bad input."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from scandx.catalog.synthetic import make_archive


def templates() -> list[Path]:
    from pydicom.data import get_testdata_file

    return [Path(get_testdata_file(n)) for n in ("CT_small.dcm", "MR_small.dcm")]


@pytest.fixture(scope="session")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 instances in several patients, studies and series; read it, don't write it."""
    root = tmp_path_factory.mktemp("archive") / "dicom"
    make_archive(templates(), root, 40, seed=3, per_series=(2, 4))
    return root


def add_bad_input(root: Path) -> dict[str, str]:
    """Bad entries under root/bad; {relative path: a word its failure reason holds}."""
    bad = root / "bad"
    bad.mkdir()
    ct = templates()[0]
    (bad / "notes.txt").write_text("not an image\n")
    (bad / "empty.dcm").write_bytes(b"")
    data = ct.read_bytes()
    (bad / "truncated.dcm").write_bytes(data[: len(data) - 5000])
    (bad / "cut-in-header.dcm").write_bytes(data[:300])
    os.mkfifo(bad / "pipe.dcm")
    (bad / "loop").symlink_to(bad)
    (bad / "dangling.dcm").symlink_to(bad / "nowhere.dcm")
    return {
        "bad/notes.txt": "not a DICOM",
        "bad/empty.dcm": "zero-byte",
        "bad/truncated.dcm": "truncated",
        "bad/cut-in-header.dcm": "before the end of the file (truncated?)",
        "bad/pipe.dcm": "FIFO",
        "bad/loop": "symlink loop",
        "bad/dangling.dcm": "dangling symlink",
    }


def add_bad_series(root: Path) -> None:
    """One series with two sizes (CT 128 and MR 64 px) and a repeated slice position."""
    import pydicom

    folder = root / "mixed"
    folder.mkdir()
    for i, source in enumerate([*templates(), templates()[0]]):
        ds = pydicom.dcmread(source)
        ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.999"
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.999.{i + 1}"
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0, 0, 0]
        ds.save_as(folder / f"{i}.dcm", enforce_file_format=False)


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, copy_function=shutil.copy2)
    return dst
