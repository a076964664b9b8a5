"""The service on a real PostgreSQL server (tests/serve/conftest.py starts one on
loopback): keys made by the CLI work, every request is audited there, and the audit
survives a restart of the service."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from scandx.cli import main
from scandx.serve.app import create_app
from scandx.serve.config import ServeConfig
from scandx.serve.store import Store


def _png(phantoms: Path) -> bytes:
    return next(phantoms.rglob("*.png")).read_bytes()


def test_service_audits_to_postgresql(quick_run, phantoms, fresh_postgres_url, capsys):
    assert main(["keys", "create", "--role", "clinician", "--db", fresh_postgres_url]) == 0
    clinician = capsys.readouterr().out.strip()
    admin, _ = Store(fresh_postgres_url).create_key("admin", "ops")
    config = ServeConfig(runs=[f"pneu={quick_run}"], db=fresh_postgres_url)
    with TestClient(create_app(config)) as client:
        r = client.post(
            "/v1/models/pneu/predict",
            files={"file": ("x.png", _png(phantoms), "image/png")},
            headers={"Authorization": f"Bearer {clinician}"},
        )
        assert r.status_code == 200, r.text
        sha = r.json()["input"]["sha256"]
        assert client.get("/v1/models").status_code == 401  # keys exist: no key, no answer
    with TestClient(create_app(config)) as client:  # a new process on the same database
        rows = client.get("/v1/audit?model=pneu", headers={"X-API-Key": admin}).json()["records"]
    assert [r["input_sha256"] for r in rows if r["status"] == 200] == [sha]
    row = next(r for r in rows if r["status"] == 200)
    assert row["weights_sha256"] and row["summary"]["labels"]
    assert Store(fresh_postgres_url).dialect == "postgresql"
