"""API keys with roles and the audit trail of the inference service.

Keys: ``sdx_<key_id>_<secret>``; the key id (16 hex) names a key in the audit log and in
``scandx keys list``; the secret is 32 random bytes (urlsafe base64). The plaintext is
returned once by ``create_key`` and never stored: the database keeps its SHA-256.

Audit: one row per request (time, key id, model name and version, weights sha256,
input sha256, status, latency, a small result summary, endpoint, error). Nothing that
identifies a patient is stored: the server passes content hashes and pseudonyms only,
and error texts have their paths replaced by keyed references.

``Store(url)`` takes ``sqlite:///PATH`` (default: ``serve.db`` in the scandx config
folder, beside the pseudonym secret) or ``postgresql://...`` (psycopg 3). A password
may instead come from libpq's ``PGPASSWORD`` or ``~/.pgpass``, keeping it off the
command line.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError, ProgrammingError, SQLAlchemyError

from scandx.core.privacy import config_dir, scrub_paths
from scandx.errors import ScandxError
from scandx.serve.roles import ROLES
from scandx.serve.store_db import (
    SCHEMA_VERSION,
    api_keys,
    audit_log,
    metadata,
    one_line_error,
    parse_url,
    postgres_engine,
    safe_url,
    schema_info,
    sqlite_engine,
)

__all__ = ["ROLES", "KeyInfo", "Store", "StoreUnavailable", "claimed_key_id", "default_db_url"]
KEY_PREFIX = "sdx"
KEY_ID_BYTES = 8  # 16 hex characters: names a key, not secret
KEY_SECRET_BYTES = 32
_TOKEN = re.compile(rf"{KEY_PREFIX}_([0-9a-f]{{{2 * KEY_ID_BYTES}}})_([A-Za-z0-9_-]{{43}})")
_KEY_ID = re.compile(rf"[0-9a-f]{{{2 * KEY_ID_BYTES}}}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_SUMMARY_BYTES = 4096
MAX_AUDIT_PAGE = 1000
MAX_LABEL_CHARS = 200


class StoreUnavailable(ScandxError):
    """The database could not be reached or used (the server answers 503)."""


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    role: str
    label: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "role": self.role,
            "label": self.label,
            "created_at": _iso(self.created_at),
            "revoked_at": _iso(self.revoked_at),
        }


def default_db_url() -> str:
    """``sqlite:///<config folder>/serve.db`` (``$SCANDX_CONFIG_DIR`` or
    ``~/.config/scandx``): the folder is created 0700 and the file 0600 on first use."""
    return f"sqlite:///{(config_dir() / 'serve.db').absolute()}"


def claimed_key_id(token: object) -> str | None:
    """The key id a well-formed token names, whether or not its secret is right: what
    the audit of a refused request may record (never the token itself)."""
    if not isinstance(token, str) or len(token) > 128:
        return None
    match = _TOKEN.fullmatch(token)
    return match.group(1) if match else None


def _token_digest(token: str) -> str:
    # SHA-256, not bcrypt/scrypt/argon2: a slow hash only protects low-entropy secrets
    # (passwords) against guessing; a key's secret is 256 bits from the OS's CSPRNG, so a
    # stolen digest cannot be inverted by guessing at any speed, and a slow hash would
    # only add CPU time to every request. The key id is hashed with it (bound together).
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(timezone.utc).isoformat()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _utc(value: datetime | None, name: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise ScandxError(f"{name} must be a date and time, got {type(value).__name__}")
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def _key_info(row: Any) -> KeyInfo:
    return KeyInfo(row.key_id, row.role, row.label, row.created_at, row.revoked_at)


def _text(value: object, name: str, limit: int, *, required: bool = False) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise ScandxError(f"audit field {name} must be text, got {type(value).__name__}")
    return value[:limit]


def _hash_field(value: object, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise ScandxError(f"audit field {name} must be a lowercase hex sha256 or None")
    return value


def _summary_json(summary: dict | None) -> str | None:
    if summary is None:
        return None
    if not isinstance(summary, dict):
        raise ScandxError(f"audit summary must be a dict, got {type(summary).__name__}")
    try:
        text = json.dumps(summary, allow_nan=False, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise ScandxError(f"audit summary is not plain finite JSON ({e})") from None
    if len(text.encode()) > MAX_SUMMARY_BYTES:
        raise ScandxError(
            f"audit summary is {len(text.encode())} bytes; at most {MAX_SUMMARY_BYTES} "
            "(label, probability, volumes: not images or masks)"
        )
    return text


class Store:
    """Keys and audit records in one database; safe to share between threads."""

    def __init__(self, url: str | None = None):
        parsed = parse_url(url if url is not None else default_db_url())
        self._url = parsed
        # printable: never the password
        self.url = safe_url(parsed.set(drivername=parsed.get_backend_name()))
        if parsed.get_backend_name() == "sqlite":
            self._engine = sqlite_engine(parsed, make_folder=url is None)
        else:
            self._engine = postgres_engine(parsed)
        self.dialect = self._engine.dialect.name
        try:
            self._create_schema()
        except BaseException:
            self._engine.dispose()
            raise

    # ---- plumbing ----

    def _unavailable(self, error: SQLAlchemyError) -> StoreUnavailable:
        return StoreUnavailable(f"database error: {one_line_error(error, self._url)}", self.url)

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """A connection in a transaction, committed on leaving; any database failure is a
        one-line StoreUnavailable naming the database, never its password."""
        try:
            with self._engine.begin() as connection:
                yield connection
        except SQLAlchemyError as e:
            raise self._unavailable(e) from None

    def _create_schema(self) -> None:
        version_query = select(schema_info.c.version).where(schema_info.c.name == "scandx")
        for attempt in range(3):
            try:
                with self._engine.begin() as c:
                    metadata.create_all(c)
                    version = c.execute(version_query).scalar()
                    if version is None:
                        version = SCHEMA_VERSION
                        c.execute(insert(schema_info).values(name="scandx", version=version))
                break
            except (IntegrityError, ProgrammingError) as e:  # workers starting at once race
                if attempt == 2:
                    raise self._unavailable(e) from None
            except SQLAlchemyError as e:
                raise self._unavailable(e) from None
        if version != SCHEMA_VERSION:
            raise ScandxError(
                f"the database holds scandx schema version {version}; this scandx reads "
                f"version {SCHEMA_VERSION}",
                self.url,
            )

    def close(self) -> None:
        """Return every pooled connection (the store is unusable afterwards)."""
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- keys ----

    def create_key(self, role: str, label: str = "") -> tuple[str, KeyInfo]:
        """A new key: ``(plaintext, info)``. The plaintext exists only in this return
        value; show it to the user once."""
        if role not in ROLES:
            raise ScandxError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
        if not isinstance(label, str) or len(label) > MAX_LABEL_CHARS:
            raise ScandxError(f"a key's label is text of at most {MAX_LABEL_CHARS} characters")
        if any(not ch.isprintable() for ch in label):
            raise ScandxError("a key's label must not hold control characters")
        for _ in range(5):  # a key id collision (64 random bits) is retried
            key_id = secrets.token_hex(KEY_ID_BYTES)
            token = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(KEY_SECRET_BYTES)}"
            info = KeyInfo(key_id, role, label, _now(), None)
            try:
                with self._engine.begin() as c:
                    c.execute(
                        insert(api_keys).values(
                            key_id=key_id,
                            role=role,
                            label=label,
                            token_sha256=_token_digest(token),
                            created_at=info.created_at,
                            revoked_at=None,
                        )
                    )
            except IntegrityError:
                continue
            except SQLAlchemyError as e:
                raise self._unavailable(e) from None
            return token, info
        raise StoreUnavailable("could not draw an unused key id", self.url)

    def authenticate(self, token: str) -> KeyInfo | None:
        """The active key ``token`` is, or None (malformed, unknown, wrong or revoked)."""
        key_id = claimed_key_id(token)
        if key_id is None:
            return None
        with self._transaction() as c:
            row = c.execute(select(api_keys).where(api_keys.c.key_id == key_id)).first()
        # looked up by id, compared in constant time: no timing tells how much matched
        if row is None or not hmac.compare_digest(row.token_sha256, _token_digest(token)):
            return None
        return _key_info(row) if row.revoked_at is None else None

    def revoke(self, key_id: str) -> bool:
        """Revoke an active key; False when no active key has this id."""
        if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
            return False
        with self._transaction() as c:
            result = c.execute(
                update(api_keys)
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=_now())
            )
        return result.rowcount == 1

    def list_keys(self) -> list[KeyInfo]:
        """Every key, revoked ones included, oldest first."""
        with self._transaction() as c:
            rows = c.execute(select(api_keys).order_by(api_keys.c.created_at, api_keys.c.key_id))
            return [_key_info(row) for row in rows]

    def has_keys(self) -> bool:
        """Whether any key is active."""
        with self._transaction() as c:
            query = select(api_keys.c.key_id).where(api_keys.c.revoked_at.is_(None)).limit(1)
            return c.execute(query).first() is not None

    # ---- audit ----

    def record(
        self,
        *,
        key_id: str | None,
        model: str | None,
        model_version: str | None,
        weights_sha256: str | None,
        input_sha256: str | None,
        status: int,
        latency_ms: float,
        summary: dict | None,
        endpoint: str,
        error: str | None = None,
    ) -> int:
        """Record one request; committed (and on disk) before it returns its row id."""
        if key_id is not None and (not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id)):
            raise ScandxError("audit field key_id must be a key id or None")
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise ScandxError(f"audit field status must be an HTTP status, got {status!r}")
        if not isinstance(latency_ms, (int, float)) or not math.isfinite(latency_ms):
            raise ScandxError(f"audit field latency_ms must be a finite number, got {latency_ms!r}")
        values = {
            "time": _now(),
            "key_id": key_id,
            "endpoint": _text(endpoint, "endpoint", 200, required=True),
            "model": _text(model, "model", 200),
            "model_version": _text(model_version, "model_version", 100),
            "weights_sha256": _hash_field(weights_sha256, "weights_sha256"),
            "input_sha256": _hash_field(input_sha256, "input_sha256"),
            "status": status,
            "latency_ms": float(latency_ms),
            "summary": _summary_json(summary),
            # a reason may quote a path (a folder named after a patient): keyed refs only
            "error": None if error is None else scrub_paths(str(error))[:500],
        }
        with self._transaction() as c:
            result = c.execute(insert(audit_log).values(**values))
            return int(result.inserted_primary_key[0])

    def audit(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        model: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict]:
        """Records with ``since <= time < until`` (naive times are UTC) of ``model``,
        newest first, as JSON-ready dicts (``time`` ISO 8601 UTC)."""
        since, until = _utc(since, "since"), _utc(until, "until")
        if (
            isinstance(limit, bool)
            or not isinstance(limit, int)
            or not 1 <= limit <= MAX_AUDIT_PAGE
        ):
            raise ScandxError(f"limit must be between 1 and {MAX_AUDIT_PAGE}, got {limit!r}")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ScandxError(f"offset must be 0 or more, got {offset!r}")
        query = select(audit_log)
        if since is not None:
            query = query.where(audit_log.c.time >= since)
        if until is not None:
            query = query.where(audit_log.c.time < until)
        if model is not None:
            query = query.where(audit_log.c.model == model)
        query = query.order_by(audit_log.c.time.desc(), audit_log.c.id.desc())
        with self._transaction() as c:
            rows = c.execute(query.limit(limit).offset(offset)).all()
        records = []
        for row in rows:
            record = dict(row._mapping)
            record["time"] = _iso(row.time)
            record["summary"] = None if row.summary is None else json.loads(row.summary)
            records.append(record)
        return records
