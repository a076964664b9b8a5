"""DuckDB over a catalog: a user's WHERE clause, and nothing else, run on its rows.

The connection sees two views: ``instances`` (every shard's rows, plus
``geometry_problem``: the reason its series is flagged, or null) and ``failures``.
Before any user text is run, DuckDB's file access is limited to the catalog's own
Parquet files (``allowed_paths``), every other external access is off
(``enable_external_access = false``: no read_csv, COPY, ATTACH, INSTALL or LOAD) and
the configuration is locked, so the text cannot turn it back on. The text must parse
as one condition inside ``SELECT * FROM instances WHERE (...)``: one statement only.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from scandx.catalog.build import load_manifest
from scandx.catalog.run import failures_file, rows_file
from scandx.errors import ScandxError

BATCH = 10_000


def connect(catalog: Path) -> Any:
    """A locked-down DuckDB connection with the ``instances`` and ``failures`` views."""
    import duckdb

    catalog = Path(catalog).absolute()
    manifest = load_manifest(catalog)
    ids = [s["id"] for s in manifest.get("shards", [])]
    parts = [str(rows_file(catalog, i)) for i in ids]
    series = str(catalog / "failures" / "series.parquet")
    fails = [str(failures_file(catalog, i)) for i in ids]
    fails += [series, str(catalog / "failures" / "walk.parquet")]
    missing = [p for p in [*parts, *fails] if not Path(p).is_file()]
    if missing:
        raise ScandxError(
            f"catalog file missing: {missing[0]}; run scandx index again to repair it", catalog
        )
    con = duckdb.connect(":memory:")
    con.execute("SET allowed_paths = $paths", {"paths": [*parts, *fails]})
    for setting in ("autoinstall_known_extensions", "autoload_known_extensions"):
        con.execute(f"SET {setting} = false")
    con.execute("SET enable_external_access = false")
    con.execute(
        "CREATE VIEW instances AS SELECT i.*, s.reason AS geometry_problem "
        f"FROM read_parquet({_list(parts)}) i LEFT JOIN read_parquet({_list([series])}) s "
        "ON i.series_instance_uid = s.series_instance_uid"
    )
    con.execute(f"CREATE VIEW failures AS SELECT * FROM read_parquet({_list(fails)})")
    con.execute("SET lock_configuration = true")
    return con


def _list(paths: list[str]) -> str:
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


def where_sql(where: str | None, select: str = "*") -> str:
    """``SELECT <select> FROM instances WHERE (<where>)``, refused unless it is one
    statement whose condition is the user's text."""
    import duckdb

    text = (where or "").strip() or "true"
    sql = f"SELECT {select} FROM instances WHERE ({text}\n)"
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as e:
        raise ScandxError(f"--query is not a valid WHERE condition ({_first_line(e)})") from None
    if len(statements) != 1:
        raise ScandxError("--query must be one WHERE condition, not several statements")
    return sql


def run_query(con: Any, sql: str, params: dict | None = None) -> Any:
    import duckdb

    try:
        return con.execute(sql, params or {})
    except duckdb.PermissionException:
        raise ScandxError(
            "--query may only read the catalog's columns: file, network and extension "
            "functions are refused"
        ) from None
    except duckdb.Error as e:
        raise ScandxError(f"--query failed: {_first_line(e)}") from None


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def count(catalog: Path, where: str | None) -> int:
    con = connect(catalog)
    try:
        return int(run_query(con, where_sql(where, "count(*)")).fetchone()[0])
    finally:
        con.close()


def select_rows(
    catalog: Path, where: str | None, columns: list[str] | None = None
) -> tuple[list[str], Iterator[tuple]]:
    """(column names, the matching rows ordered by path) for all columns or ``columns``."""
    con = connect(catalog)
    select = ", ".join('"' + c.replace('"', '""') + '"' for c in columns) if columns else "*"
    try:
        cursor = run_query(con, where_sql(where, select) + " ORDER BY path")
    except ScandxError:
        con.close()
        raise
    names = [d[0] for d in cursor.description]

    def rows() -> Iterator[tuple]:
        try:
            while batch := cursor.fetchmany(BATCH):
                yield from batch
        finally:
            con.close()

    return names, rows()


def write_csv(catalog: Path, where: str | None, out: TextIO | None = None) -> int:
    """Matching rows as CSV (header first); returns how many."""
    names, rows = select_rows(catalog, where)
    writer = csv.writer(out or sys.stdout, lineterminator="\n")
    writer.writerow(names)
    n = 0
    for values in rows:
        writer.writerow([_cell(v) for v in values])
        n += 1
    return n


def _cell(value: Any) -> Any:
    if isinstance(value, list):
        return "\\".join(f"{v:g}" for v in value)  # DICOM multi-value style
    return "" if value is None else value
