"""Keyed pseudonyms: stable per installation, different without the secret, not guessable."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from scandx.core import privacy
from scandx.errors import ScandxError


@pytest.fixture()
def secret_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cfg" / "secret"
    monkeypatch.setenv("SCANDX_SECRET_FILE", str(path))
    return path


def test_a_secret_is_created_once_owner_only_and_reused(secret_file: Path):
    first = privacy.pseudonym("P0030")
    assert secret_file.exists()
    assert stat.S_IMODE(os.stat(secret_file).st_mode) == 0o600
    assert privacy.pseudonym("P0030") == first
    assert privacy.is_pseudonym(first)
    assert privacy.pseudonym("P0030", "uid") != first  # kinds never collide


def test_another_installation_gives_other_pseudonyms(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("SCANDX_SECRET_FILE", str(tmp_path / "a"))
    a = privacy.pseudonym("12345")
    monkeypatch.setenv("SCANDX_SECRET_FILE", str(tmp_path / "b"))
    assert privacy.pseudonym("12345") != a


def test_a_numeric_id_is_not_recovered_by_hashing_candidates(secret_file: Path):
    """The unsalted SHA-256 prefix of issue 11 was inverted in 3.4 s; a keyed one is not."""
    target = privacy.pseudonym("4711").split("-", 1)[1]
    guesses = {hashlib.sha256(str(i).encode()).hexdigest()[:16] for i in range(10000)}
    assert target not in guesses


def test_an_unreadable_secret_is_one_clear_error(secret_file: Path):
    secret_file.parent.mkdir(parents=True)
    secret_file.write_text("not hex\n")
    with pytest.raises(ScandxError, match="secret"):
        privacy.pseudonym("x")


def test_file_ref_is_a_keyed_pseudonym_of_the_resolved_path(tmp_path: Path):
    f = tmp_path / "Doe_John" / "scan.dcm"
    f.parent.mkdir()
    f.write_bytes(b"x")
    ref = privacy.file_ref(f)
    assert privacy.is_pseudonym(ref, "file") and "Doe" not in ref
    assert privacy.file_ref(tmp_path / "Doe_John" / ".." / "Doe_John" / "scan.dcm") == ref
    assert privacy.locate([ref, "file-0000000000000000"], tmp_path) == {ref: f}


def test_scrub_paths_and_where_ref_leave_no_path(tmp_path: Path):
    text = privacy.scrub_paths("image file not found: /data/Doe_John/a.dcm.")
    assert text == f"image file not found: {privacy.file_ref('/data/Doe_John/a.dcm')}."
    assert privacy.scrub_paths("mask shape (20, 20) differs") == "mask shape (20, 20) differs"
    assert privacy.where_ref(f"{tmp_path}/labels.csv:12") == (
        f"{privacy.file_ref(tmp_path / 'labels.csv')}:12"
    )
    case = privacy.pseudonym("Doe_John", "case")
    assert privacy.where_ref(case) == case  # already a pseudonym


@pytest.mark.parametrize(
    ("column", "identifying"),
    [
        ("PatientName", True),
        ("accession_number", True),
        ("MRN", True),
        ("birth_date", True),
        ("StudyDate", True),
        ("study_id", True),
        ("email", True),
        ("sex", False),
        ("age", False),
        ("site", False),
        ("candidate", False),
        ("smoker", False),
    ],
)
def test_identifier_like_columns(column: str, identifying: bool):
    assert privacy.identifying_column(column) == identifying


def test_csv_columns_named_like_identifiers_are_keyed(tmp_path: Path):
    import numpy as np
    from PIL import Image

    from scandx.tasks.classification.data.sources import load_source

    rows = ["path,label,PatientName,accession,age"]
    for i in range(8):
        Image.fromarray(np.full((8, 8), i * 20, np.uint8)).save(tmp_path / f"{i}.png")
        rows.append(f"{i}.png,{i % 2},DOE^JANE{i},ACC{i}77,{40 + i}")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    m = load_source(tmp_path / "m.csv")
    out = tmp_path / "manifest.csv"
    m.to_csv(out)
    text = out.read_text()
    assert "DOE^JANE" not in text and "ACC" not in text
    assert "meta-" in text and ",41" in text  # keyed, and age kept as it is
    assert any("named like identifiers" in n for n in m.notes)
