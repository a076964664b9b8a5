"""The database behind the service's key and audit store: tables, URLs, engines.

Two back ends: a SQLite file (the default, beside the pseudonym secret) and
PostgreSQL through psycopg 3. Every failure to reach or use the database becomes a
one-line ``ScandxError`` that names the database without its password.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    create_engine,
    event,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from scandx.errors import ScandxError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SQLITE_BUSY_MS = 30_000  # a writer waits this long for another one before failing
PG_CONNECT_TIMEOUT_S = 10
URL_FORMS = "sqlite:///PATH or postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"


class UTCDateTime(TypeDecorator):
    """A point in time, stored as naive UTC (the same in SQLite and PostgreSQL) and read
    back timezone-aware; a naive value given is taken as UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None or value.tzinfo is None:
            return value
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


metadata = MetaData()

schema_info = Table(
    "scandx_schema",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("version", Integer, nullable=False),
)

api_keys = Table(
    "scandx_api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("label", String(200), nullable=False),
    Column("token_sha256", String(64), nullable=False),  # never the key itself
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
)

# no foreign key to api_keys: a refused request (401) has no key, and keys are revoked,
# never deleted, so every key_id recorded stays resolvable
audit_log = Table(
    "scandx_audit",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("time", UTCDateTime, nullable=False),
    Column("key_id", String(32)),
    Column("endpoint", String(200), nullable=False),
    Column("model", String(200)),
    Column("model_version", String(100)),
    Column("weights_sha256", String(64)),
    Column("input_sha256", String(64)),
    Column("status", Integer, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("summary", Text),  # compact JSON, at most a few KB
    Column("error", String(500)),
    Index("ix_scandx_audit_time", "time"),
    Index("ix_scandx_audit_model_time", "model", "time"),
)


def safe_url(url: URL) -> str:
    """The URL to show anyone: the password replaced by ``***``."""
    return url.render_as_string(hide_password=True)


def parse_url(text: str) -> URL:
    if not isinstance(text, str) or not text.strip():
        raise ScandxError(f"no database URL given; expected {URL_FORMS}")
    try:
        url = make_url(text.strip())
    except (ArgumentError, ValueError):  # their message quotes the URL, password included
        raise ScandxError(f"cannot parse the database URL; expected {URL_FORMS}") from None
    backend = url.drivername.partition("+")[0]
    if backend in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg")
    if url.drivername in ("sqlite", "sqlite+pysqlite"):
        return url.set(drivername="sqlite+pysqlite")
    raise ScandxError(
        f"unsupported database {url.drivername!r}; expected {URL_FORMS}", safe_url(url)
    )


def one_line_error(error: BaseException, url: URL) -> str:
    """The first line of the driver's message, never the password."""
    orig = getattr(error, "orig", None) or error
    lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
    text = lines[0] if lines else type(orig).__name__
    if url.password:
        text = text.replace(str(url.password), "***")
    return text


def create_sqlite_file(path: Path, *, make_folder: bool) -> None:
    """The database file, owner-only (0600) when scandx creates it; its folder 0700 when
    ``make_folder`` and it is created here. SQLite gives its -wal and -shm files the
    database file's permissions."""
    if make_folder and not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.parent.is_dir():
        raise ScandxError("the database's folder does not exist", path.parent)
    if path.is_dir():
        raise ScandxError("the database path is a folder", path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as e:
        raise ScandxError(f"cannot create the database ({e.strerror})", path) from None
    os.close(fd)


def sqlite_engine(url: URL, *, make_folder: bool = False) -> Engine:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        raise ScandxError("an in-memory database keeps no audit trail; give a file: sqlite:///PATH")
    path = Path(database).expanduser().absolute()
    create_sqlite_file(path, make_folder=make_folder)
    engine = create_engine(
        url.set(database=str(path)),
        # the server's thread pool shares the engine; each thread borrows a connection
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_MS / 1000},
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, connection_record):  # noqa: ANN001
        cursor = dbapi_connection.cursor()
        try:
            # WAL: readers never block the writer; FULL: every commit is on disk (WAL
            # fsynced) before record() returns, so a killed server loses no answered request
            mode = cursor.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("SQLite refused WAL mode (%s); writes will be slower", mode)
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
        finally:
            cursor.close()

    return engine


def postgres_engine(url: URL) -> Engine:
    connect_args: dict[str, object] = {}
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_S
    if "application_name" not in url.query:
        connect_args["application_name"] = "scandx-serve"
    # pre-ping: a connection the server dropped (restart, idle timeout) is replaced
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args)
