"""The hospital node's memory: one SQLite file in the state folder.

A study is named by the keyed pseudonym of its Study Instance UID (``study-<hex>``);
nothing in the database, the folder names or the log carries a UID or a patient
identifier in clear. Statuses, in order:

- ``receiving``: instances are arriving (the node) or were seen in the PACS (DICOMweb);
- ``received``: complete (no instance for ``--idle`` seconds), waiting to be processed;
- ``processing``: the processor is running (after a crash: processed again, nothing of
  it was sent);
- ``processed``: results are on disk and their series are remembered as our own;
  waiting to be sent (after a crash: the same files are sent, never recomputed);
- ``sent``; ``no_applicable_series`` (nothing to send); ``failed`` (moved to the
  dead-letter folder with the reason, after ``attempts`` tries or a processing error).

WAL with ``synchronous=FULL``: a status committed is on disk before the node acts on it.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

RECEIVING, RECEIVED, PROCESSING, PROCESSED = "receiving", "received", "processing", "processed"
SENT, NO_APPLICABLE, FAILED = "sent", "no_applicable_series", "failed"
FINISHED = (SENT, NO_APPLICABLE, FAILED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
    study TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '',
    instances INTEGER NOT NULL DEFAULT 0,
    results INTEGER NOT NULL DEFAULT 0,
    last_instance_at REAL NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS instances (sop TEXT PRIMARY KEY, study TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS own_series (series TEXT PRIMARY KEY, study TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rejects (
    at REAL NOT NULL, calling_aet TEXT NOT NULL, reason TEXT NOT NULL, kept TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class StudyStatus:
    study: str  # study-<hex>
    status: str
    attempts: int
    reason: str
    instances: int
    results: int
    last_instance_at: float
    next_attempt_at: float
    updated_at: float


class StateDB:
    """Thread-safe (one connection, one lock): the SCP's association threads and the
    worker share it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self.path.chmod(0o600)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _run(self, sql: str, args: Iterable = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, tuple(args)).fetchall()

    # -- studies -------------------------------------------------------------------
    def get(self, study: str) -> StudyStatus | None:
        rows = self._run(f"SELECT {_COLUMNS} FROM studies WHERE study = ?", (study,))
        return StudyStatus(*rows[0]) if rows else None

    def all(self, status: str | None = None) -> list[StudyStatus]:
        if status is None:
            rows = self._run(f"SELECT {_COLUMNS} FROM studies ORDER BY updated_at")
        else:
            rows = self._run(
                f"SELECT {_COLUMNS} FROM studies WHERE status = ? ORDER BY updated_at", (status,)
            )
        return [StudyStatus(*r) for r in rows]

    def set_status(self, study: str, status: str, reason: str = "", **fields: float) -> None:
        """Insert or update ``study``; ``fields`` among attempts, instances, results,
        last_instance_at, next_attempt_at."""
        allowed = {"attempts", "instances", "results", "last_instance_at", "next_attempt_at"}
        if set(fields) - allowed:
            raise ValueError(f"unknown fields {sorted(set(fields) - allowed)}")
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO studies (study, status, reason, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(study) DO UPDATE SET status = excluded.status, "
                "reason = excluded.reason, updated_at = excluded.updated_at",
                (study, status, reason, now),
            )
            for name, value in fields.items():
                self._db.execute(f"UPDATE studies SET {name} = ? WHERE study = ?", (value, study))

    def add_instance(self, study: str, sop: str, at: float) -> bool:
        """Record one received instance; False when this SOP instance was already
        received (a duplicate: acknowledged, not stored twice). A new instance for a
        finished study opens it again (``receiving``)."""
        with self._lock:
            try:
                self._db.execute("INSERT INTO instances VALUES (?, ?)", (sop, study))
            except sqlite3.IntegrityError:
                return False
            self._db.execute(
                "INSERT INTO studies (study, status, instances, last_instance_at, updated_at) "
                "VALUES (?, ?, 1, ?, ?) ON CONFLICT(study) DO UPDATE SET "
                "status = ?, instances = instances + 1, last_instance_at = ?, "
                "updated_at = ?, attempts = CASE WHEN status IN (?, ?, ?) THEN 0 "
                "ELSE attempts END",
                (study, RECEIVING, at, at, RECEIVING, at, at, *FINISHED),
            )
        return True

    def has_instance(self, sop: str) -> bool:
        return bool(self._run("SELECT 1 FROM instances WHERE sop = ?", (sop,)))

    # -- our own results -------------------------------------------------------------
    def add_own_series(self, study: str, series: Iterable[str]) -> None:
        with self._lock:
            for s in series:
                self._db.execute("INSERT OR IGNORE INTO own_series VALUES (?, ?)", (s, study))

    def is_own_series(self, series: str) -> bool:
        return bool(self._run("SELECT 1 FROM own_series WHERE series = ?", (series,)))

    # -- refused input -----------------------------------------------------------------
    def add_reject(self, calling_aet: str, reason: str, kept: str = "") -> None:
        self._run(
            "INSERT INTO rejects VALUES (?, ?, ?, ?)", (time.time(), calling_aet, reason, kept)
        )

    def rejects(self) -> list[tuple[str, str, str]]:
        return [tuple(r) for r in self._run("SELECT calling_aet, reason, kept FROM rejects")]


_COLUMNS = (
    "study, status, attempts, reason, instances, results, last_instance_at, "
    "next_attempt_at, updated_at"
)
