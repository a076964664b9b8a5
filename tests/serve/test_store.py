"""The service's key and audit store, on a SQLite file and on a real PostgreSQL server."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import MetaData, select, update

from scandx.errors import ScandxError
from scandx.serve.keys_cli import main as keys_main
from scandx.serve.store import ROLES, Store, claimed_key_id
from scandx.serve.store_db import schema_info

ROOT = Path(__file__).resolve().parents[2]
SHA_A, SHA_B = "a" * 64, "b" * 64


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'serve.db'}"
    return request.getfixturevalue("fresh_postgres_url")


@pytest.fixture
def store(db_url: str):
    with Store(db_url) as s:
        yield s


def _record(store: Store, model: str = "chest", status: int = 200, **kw) -> int:
    values = dict(
        key_id=None,
        model=model,
        model_version="3",
        weights_sha256=SHA_A,
        input_sha256=SHA_B,
        status=status,
        latency_ms=12.5,
        summary={"label": "pneumonia", "probability": 0.91},
        endpoint=f"/v1/models/{model}/predict",
    )
    return store.record(**{**values, **kw})


def _dump(store: Store) -> str:
    """Every row of every table in the database, as text."""
    meta = MetaData()
    meta.reflect(store._engine)
    with store._engine.connect() as c:
        return "\n".join(
            repr(tuple(row)) for table in meta.sorted_tables for row in c.execute(select(table))
        )


def test_plaintext_key_never_stored(store: Store, db_url: str) -> None:
    tokens = [store.create_key(role, "ward 3")[0] for role in ROLES]
    _record(store, key_id=tokens[0].split("_")[1])
    dump = _dump(store)
    assert dump.count("ward 3") == 2  # the key rows are in the dump
    for token in tokens:
        secret = token.split("_", 2)[2]
        assert token not in dump and secret not in dump
        assert hashlib.sha256(token.encode()).hexdigest() in dump  # what is kept instead
    if db_url.startswith("sqlite"):  # the bytes on disk, write-ahead log included
        path = Path(db_url.removeprefix("sqlite:///"))
        raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
        assert all(t.split("_", 2)[2].encode() not in raw for t in tokens)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_authenticate(store: Store, db_url: str) -> None:
    assert not store.has_keys()
    token, info = store.create_key("clinician", "PACS router")
    assert token.startswith(f"sdx_{info.key_id}_") and len(token.split("_", 2)[2]) >= 43
    assert store.authenticate(token) == info and info.active and store.has_keys()
    last = token[-1]
    wrong = token[:-1] + ("B" if last != "B" else "C")
    unknown = f"sdx_{'0' * 16}_{token.split('_', 2)[2]}"
    malformed = ["", "sdx_", token + "x", token.upper(), " " + token, f"Bearer {token}"]
    malformed += [token.replace("sdx_", "sdk_"), "x" * 10_000, None, 42]
    for bad in (wrong, unknown, *malformed):
        assert store.authenticate(bad) is None, bad
    assert claimed_key_id(wrong) == info.key_id and claimed_key_id(f"Bearer {token}") is None
    assert store.revoke(info.key_id) and not store.revoke(info.key_id)
    assert not store.revoke("0" * 16) and not store.revoke("not an id")
    assert store.authenticate(token) is None and not store.has_keys()
    listed = store.list_keys()
    assert [k.key_id for k in listed] == [info.key_id] and listed[0].revoked_at is not None
    # a restart (a new Store on the same database) knows the keys
    token2, info2 = store.create_key("admin")
    with Store(db_url) as again:
        assert again.authenticate(token2) == info2 and again.authenticate(token) is None


def test_roles(store: Store) -> None:
    for role in ROLES:
        token, info = store.create_key(role)
        assert store.authenticate(token).role == role == info.role
    with pytest.raises(ScandxError, match="unknown role 'nurse'; roles: clinician, admin"):
        store.create_key("nurse")
    with pytest.raises(ScandxError, match="control characters"):
        store.create_key("admin", "a\nb")
    assert [k.role for k in store.list_keys()] == list(ROLES)
    assert set(store.list_keys()[0].as_dict()) == {
        "key_id", "role", "label", "created_at", "revoked_at"}  # fmt: skip


def test_audit_filters(store: Store) -> None:
    ids = [_record(store, model=m) for m in ("chest", "liver", "chest", "brain")]
    _record(store, model=None, status=401, summary=None, input_sha256=None, weights_sha256=None,
            endpoint="/v1/audit", error="missing key")  # fmt: skip
    everything = store.audit()
    assert [r["id"] for r in everything][1:] == ids[::-1]  # newest first
    first = everything[-1]
    assert first["summary"] == {"label": "pneumonia", "probability": 0.91}
    assert first["status"] == 200 and first["latency_ms"] == 12.5 and first["key_id"] is None
    times = [datetime.fromisoformat(r["time"]) for r in everything[::-1]]
    assert all(t.tzinfo == timezone.utc for t in times) and times == sorted(times)
    assert [r["id"] for r in store.audit(model="chest")] == [ids[2], ids[0]]
    assert store.audit(model="spleen") == []
    assert [r["id"] for r in store.audit(since=times[1], until=times[3])] == [ids[2], ids[1]]
    naive = times[3].replace(tzinfo=None)  # naive means UTC
    assert [r["id"] for r in store.audit(since=naive)] == [everything[0]["id"], ids[3]]
    other_zone = times[3].astimezone(timezone(timedelta(hours=5)))
    assert len(store.audit(since=other_zone)) == 2
    assert [r["id"] for r in store.audit(limit=2)] == [everything[0]["id"], ids[3]]
    assert [r["id"] for r in store.audit(limit=2, offset=3)] == [ids[1], ids[0]]
    assert store.audit(since=times[-1] + timedelta(seconds=1)) == []
    for bad in ({"limit": 0}, {"limit": 100_000}, {"offset": -1}, {"since": "yesterday"}):
        with pytest.raises(ScandxError):
            store.audit(**bad)


def test_record_checks(store: Store) -> None:
    with pytest.raises(ScandxError, match="at most 4096"):
        _record(store, summary={"mask": [0] * 5000})
    with pytest.raises(ScandxError, match="finite JSON"):
        _record(store, summary={"probability": float("nan")})
    for field in ("input_sha256", "weights_sha256"):
        with pytest.raises(ScandxError, match=field):  # a file name is not a hash
            _record(store, **{field: "Smith_John.dcm"})
    with pytest.raises(ScandxError, match="status"):
        _record(store, status=1000)
    # a reason quoting a path (a folder named after a patient) keeps a keyed reference only
    _record(store, status=422, error="cannot read /data/Smith_John/img.dcm: truncated")
    (row,) = store.audit()
    assert "Smith" not in row["error"] and row["error"].startswith("cannot read file-")


def test_records_from_8_threads(store: Store) -> None:
    errors: list[BaseException] = []

    def client(n: int) -> None:
        try:
            for i in range(15):
                _record(store, model=f"m{n}", latency_ms=float(i))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    rows = store.audit(limit=1000)
    assert len(rows) == 120 and len({r["id"] for r in rows}) == 120
    assert all(len(store.audit(model=f"m{n}", limit=1000)) == 15 for n in range(8))


def test_schema_version_checked(store: Store, db_url: str) -> None:
    with store._engine.begin() as c:
        c.execute(update(schema_info).values(version=99))
    with pytest.raises(ScandxError, match="schema version 99"):
        Store(db_url)


@pytest.mark.parametrize(
    "url, reason",
    [
        ("mysql://u:hunter2@db/x", "unsupported database 'mysql'"),
        ("hunter2", "cannot parse the database URL"),
        ("http://u:hunter2@h/x", "unsupported database"),
        ("", "no database URL"),
        ("sqlite://", "in-memory"),
        ("sqlite:///:memory:", "in-memory"),
    ],
)
def test_bad_url_one_line_no_password(url: str, reason: str) -> None:
    with pytest.raises(ScandxError, match=reason) as e:
        Store(url)
    assert "hunter2" not in str(e.value) and "\n" not in str(e.value)


def test_unreachable_and_wrong_password(postgres_server, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for url, reason in [
        (f"postgresql://scandx:hunter2@127.0.0.1:{port}/x", "Connection refused"),
        (postgres_server.url("scandx_test").replace(postgres_server.password, "hunter2"),
         "password authentication failed"),
        (f"sqlite:///{tmp_path}/missing/serve.db", "folder does not exist"),
    ]:  # fmt: skip
        with pytest.raises(ScandxError, match=reason) as e:
            Store(url)
        assert "hunter2" not in str(e.value) and "\n" not in str(e.value)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database" * 100)
    with pytest.raises(ScandxError, match="not a database"):
        Store(f"sqlite:///{junk}")


def test_default_db_in_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "fresh" / "scandx"
    monkeypatch.setenv("SCANDX_CONFIG_DIR", str(config))
    with Store() as store:
        store.create_key("admin")
        assert store.url == f"sqlite:///{config / 'serve.db'}"
    assert stat.S_IMODE(config.stat().st_mode) == 0o700
    assert stat.S_IMODE((config / "serve.db").stat().st_mode) == 0o600
    with sqlite3.connect(config / "serve.db") as c:  # WAL stays set in the file
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_record_survives_sigkill(tmp_path: Path) -> None:
    """A process killed right after record() returned: the record is on disk."""
    db = tmp_path / "serve.db"
    child = (
        "import os, signal, sys\nfrom scandx.serve.store import Store\n"
        f"s = Store({f'sqlite:///{db}'!r})\n"
        "rid = s.record(key_id=None, model='m', model_version='1', weights_sha256=None, "
        "input_sha256=None, status=200, latency_ms=1.0, summary=None, endpoint='/x')\n"
        "print(rid, flush=True)\nos.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-c", child], env=env, capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr
    with Store(f"sqlite:///{db}") as store:
        assert [r["id"] for r in store.audit()] == [int(done.stdout)]


def test_keys_cli(db_url: str, capsys: pytest.CaptureFixture) -> None:
    assert (
        keys_main(["keys", "create", "--role", "clinician", "--label", "RIS", "--db", db_url]) == 0
    )
    out, err = capsys.readouterr()
    token = out.strip()
    assert out.count("\n") == 1 and token.startswith("sdx_") and "cannot be shown again" in err
    key_id = token.split("_")[1]
    assert keys_main(["keys", "list", "--db", db_url]) == 0
    listing = capsys.readouterr().out
    assert key_id in listing and "clinician" in listing and "RIS" in listing
    assert token.split("_", 2)[2] not in listing
    assert hashlib.sha256(token.encode()).hexdigest() not in listing
    assert keys_main(["keys", "revoke", key_id, "--db", db_url]) == 0
    assert keys_main(["keys", "revoke", key_id, "--db", db_url]) == 2
    assert "no active key" in capsys.readouterr().err
    with Store(db_url) as store:
        assert store.authenticate(token) is None
    assert keys_main(["keys", "list", "--db", "mysql://u:hunter2@h/x"]) == 2
    assert "hunter2" not in capsys.readouterr().err
