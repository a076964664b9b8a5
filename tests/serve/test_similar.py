"""``scandx serve --index``: the similar cases of an upload through the JSON route, with
the service's keys, roles and audit trail, and its refusals."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from scandx.cli import main
from scandx.errors import ScandxError
from scandx.serve.app import ServiceState, create_app
from scandx.serve.config import ServeConfig
from scandx.serve.store import Store


@pytest.fixture(scope="module")
def indexes(quick_run: Path, phantoms: Path, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serve-index")
    run_index, pixel_index = root / "run.index", root / "pixels.index"
    assert (
        main(["-q", "embed", str(quick_run), "--data", str(phantoms), "--out", str(run_index)]) == 0
    )
    assert (
        main(["-q", "embed", "--pixels", "--data", str(phantoms), "--out", str(pixel_index)]) == 0
    )
    return {"run": run_index, "pixels": pixel_index}


@pytest.fixture(scope="module")
def service(quick_run: Path, indexes, tmp_path_factory):
    db = tmp_path_factory.mktemp("db") / "audit.db"
    with Store(f"sqlite:///{db}") as store:
        keys = {role: store.create_key(role, f"test {role}")[0] for role in ("admin", "clinician")}
    config = ServeConfig(
        runs=[f"cls={quick_run}", f"plain={quick_run}"],
        db=f"sqlite:///{db}",
        indexes=[str(indexes["run"])],
    )
    with TestClient(create_app(config)) as client:
        yield client, keys


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def post(client, key, model, data: bytes, **params):
    return client.post(
        f"/v1/models/{model}/similar", params=params, headers=auth(key),
        files={"file": ("q.png", data, "application/octet-stream")},
    )  # fmt: skip


def test_similar_cases_of_an_upload(service, phantoms: Path):
    client, keys = service
    query = sorted(phantoms.rglob("*.png"))[0]
    r = post(client, keys["clinician"], "cls", query.read_bytes(), k=3)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["index"]["embedding"] == "classifier-penultimate"
    near = body["results"][0]["neighbours"]
    assert [n["rank"] for n in near] == [1, 2, 3]
    assert near[0]["distance"] == pytest.approx(0, abs=1e-4)  # the query's own copy
    assert near[0]["label"] == query.parent.parent.name
    png = base64.b64decode(near[0]["thumbnail_png"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    models = client.get("/v1/models", headers=auth(keys["clinician"])).json()["models"]
    cases = {m["name"]: m["similar_cases"] for m in models}
    assert cases["cls"] > 0 and cases["plain"] == 0  # the index went to the first match
    audit = client.get("/v1/audit", headers=auth(keys["admin"])).json()["records"]
    rec = next(a for a in audit if a["endpoint"] == "similar" and a["status"] == 200)
    assert rec["model"] == "cls" and rec["summary"]["k"] == 3


def test_refusals(service, phantoms: Path):
    client, keys = service
    query = sorted(phantoms.rglob("*.png"))[0].read_bytes()
    assert post(client, "", "cls", query).status_code == 401
    assert post(client, keys["clinician"], "nope", query).status_code == 404
    r = post(client, keys["clinician"], "plain", query)
    assert r.status_code == 404 and "no similar-case index" in r.json()["detail"]
    assert post(client, keys["clinician"], "cls", query, k=0).status_code == 422
    buf = io.BytesIO()
    colour = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(colour).save(buf, format="PNG")
    r = post(client, keys["clinician"], "cls", buf.getvalue())
    assert r.status_code == 422
    assert "query is 3-channel (colour), the index holds grey-scale images" in r.json()["detail"]


def test_an_index_of_other_weights_stops_the_start(quick_run: Path, indexes, tmp_path):
    config = ServeConfig(
        runs=[str(quick_run)], db=f"sqlite:///{tmp_path / 'a.db'}", indexes=[str(indexes["pixels"])]
    )
    with pytest.raises(ScandxError, match="which no served run has"):
        ServiceState(config).start()
