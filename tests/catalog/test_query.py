"""DuckDB over a catalog: the user's WHERE clause only; anything else refused in one line."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from scandx.catalog import query
from scandx.catalog.build import build_catalog
from scandx.catalog.cli import run_index
from scandx.errors import ScandxError
from tests.catalog.test_build import index_args


@pytest.fixture(scope="module")
def catalog(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("query") / "cat"
    build_catalog(archive, out, workers=1, shard_size=8)
    return out


def test_where_clause_counts_and_rows(catalog: Path) -> None:
    ct = query.count(catalog, "modality = 'CT' and rows >= 128")
    mr = query.count(catalog, "modality = 'MR' and columns = 64")
    assert ct > 0 and mr > 0 and ct + mr == 40 == query.count(catalog, None)
    out = io.StringIO()
    assert query.write_csv(catalog, "modality = 'MR'", out) == mr
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert {r["modality"] for r in rows} == {"MR"} and rows[0]["patient"].startswith("pid-")
    assert rows[0]["geometry_problem"] == "" and rows[0]["image_position"].count("\\") == 2
    assert query.count(catalog, "study_date >= DATE '1900-01-01' and path like '%.dcm'") >= 0


@pytest.mark.parametrize(
    "hostile",
    [
        "path in (select column0 from read_csv('/etc/passwd'))",
        "true); COPY (select 1) TO '/tmp/scandx-pwned.csv'; select (1",
        "true); ATTACH '/tmp/x.db' AS x; select (1",
        "true); INSTALL httpfs; select (1",
        "true); SET enable_external_access = true; select (1",
        "exists (select * from glob('/etc/*'))",
        "modality = 'CT'; DROP VIEW instances",
    ],
)
def test_hostile_query_is_refused_in_one_line(catalog: Path, hostile: str) -> None:
    with pytest.raises(ScandxError) as err:
        query.count(catalog, hostile)
    assert "--query" in str(err.value) and "\n" not in str(err.value)
    assert not Path("/tmp/scandx-pwned.csv").exists()


def test_unknown_column_names_the_column(catalog: Path) -> None:
    with pytest.raises(ScandxError, match="patient_name"):
        query.count(catalog, "patient_name = 'x'")


def test_cli_count_and_csv(catalog: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert run_index(index_args(str(catalog), "--query", "modality = 'CT'", "--count")) == 0
    n = int(capsys.readouterr().out.strip())
    out = tmp_path / "ct.csv"
    assert (
        run_index(index_args(str(catalog), "--query", "modality = 'CT'", "--out-csv", str(out)))
        == 0
    )
    assert f"wrote {n} row(s)" in capsys.readouterr().out
    assert len(out.read_text().splitlines()) == n + 1
    with pytest.raises(ScandxError, match="needs a catalog"):
        run_index(index_args(str(tmp_path), "--query", "true"))


def test_scandx_main_runs_index(
    catalog: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The command is wired on the main parser: a count, and a bad root exits 2."""
    from scandx.cli import main

    assert main(["index", str(catalog), "--query", "rows >= 1", "--count"]) == 0
    assert int(capsys.readouterr().out.strip()) > 0
    assert main(["index", str(tmp_path / "missing"), "--out", str(tmp_path / "c")]) == 2
    assert "DICOM folder not found" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
