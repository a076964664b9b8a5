"""The service's HTTP behaviour through FastAPI's TestClient on the real store: the same
answers as ``scandx predict``, keys and roles, the audit trail (with no patient
identifier anywhere), limits, metrics, OpenAPI; then ``scandx serve`` itself: refusing
an open address without keys, and HTTPS with a certificate."""

from __future__ import annotations

import base64
import csv
import io
import logging
import shutil
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from scandx.cli import main
from scandx.core.privacy import file_ref
from scandx.serve.app import create_app
from scandx.serve.config import ServeConfig
from scandx.serve.store import Store
from tests.serve import hostile as H
from tests.serve.live import LiveServer, scandx


@pytest.fixture(scope="module")
def seg_runs(tmp_path_factory) -> dict[str, Path]:
    """A tiny 2D ellipse segmenter and a 3D one trained on a DICOM series with a SEG."""
    from scandx.tasks.segmentation.synthetic import make_dicom_seg_cases, make_ellipse_folders

    root = tmp_path_factory.mktemp("seg")
    d2 = make_ellipse_folders(root / "d2", n=12, size=32)
    d3 = make_dicom_seg_cases(root / "d3", n=4, seed=3)
    for data, run in ((d2, root / "seg2d"), (d3, root / "seg3d")):
        args = ["-q", "train", "--data", str(data), "--out", str(run), "--time-budget", "5"]
        assert main(args) == 0
    series = root / "series"  # the CT slices of one case, without its SEG
    series.mkdir()
    for f in (d3 / "case00").glob("*.dcm"):
        if f.name != "seg.dcm":
            shutil.copy(f, series / f.name)
    return {"seg2d": root / "seg2d", "seg3d": root / "seg3d", "image2d": d2 / "images" / "c000.png",
            "series": series}  # fmt: skip


@pytest.fixture(scope="module")
def service(quick_run, seg_runs, tmp_path_factory):
    """(client, keys, db file) with three models and an admin and a clinician key."""
    db = tmp_path_factory.mktemp("db") / "audit.db"
    with Store(f"sqlite:///{db}") as store:
        keys = {role: store.create_key(role, f"test {role}")[0] for role in ("admin", "clinician")}
    config = ServeConfig(
        runs=[f"cls={quick_run}", f"seg2d={seg_runs['seg2d']}", f"seg3d={seg_runs['seg3d']}"],
        db=f"sqlite:///{db}",
        max_upload_mb=2,
        max_pixels=2_000_000,
    )
    with TestClient(create_app(config)) as client:
        yield client, keys, db


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def predict(client, key, model, data: bytes, name="upload.bin", **params):
    return client.post(
        f"/v1/models/{model}/predict", params=params, headers=auth(key),
        files={"file": (name, data, "application/octet-stream")},
    )  # fmt: skip


def cli_predict(run: Path, path: Path, out: Path) -> list[dict]:
    assert main(["-q", "predict", str(run), str(path), "--out", str(out)]) == 0
    return list(csv.DictReader((out / "predictions.csv").open()))


def audit_rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as c:
        return c.execute("SELECT * FROM scandx_audit ORDER BY id").fetchall()


def test_classification_answers_what_scandx_predict_answers(service, phantoms, tmp_path):
    client, keys, _ = service
    for f in [next(phantoms.rglob("*.dcm")), next(phantoms.rglob("*.png"))]:
        r = predict(client, keys["clinician"], "cls", f.read_bytes(), heatmap="true")
        assert r.status_code == 200, r.text
        body = r.json()
        cli = cli_predict(Path(client.app.state.scandx.models["cls"].run), f, tmp_path / f.suffix)
        (pred,) = body["predictions"]
        for c, p in pred["probabilities"].items():
            assert p == pytest.approx(float(cli[0][f"prob_{c}"]), abs=1e-6)
        assert pred["label"] == cli[0]["predicted"]
        assert {"uncertainty", "ood_flag", "ood_score"} <= set(pred)
        from PIL import Image

        heat = Image.open(io.BytesIO(base64.b64decode(pred["heatmap"]["overlay_png"])))
        assert heat.mode == "RGB" and min(heat.size) >= 32
        assert body["model"]["name"] == "cls" and len(body["model"]["weights_sha256"]) == 64
        assert body["input"]["sha256"] == __import__("hashlib").sha256(f.read_bytes()).hexdigest()


def test_segmentation_masks_match_scandx_predict_2d_and_dicom_series(service, seg_runs, tmp_path):
    import nibabel as nib
    from PIL import Image

    client, keys, _ = service
    img = seg_runs["image2d"]
    r = predict(client, keys["clinician"], "seg2d", img.read_bytes(), preview="true")
    assert r.status_code == 200, r.text
    (pred,) = r.json()["predictions"]
    assert pred["mask"]["format"] == "png" and len(pred["preview"]) == 1
    served = np.asarray(Image.open(io.BytesIO(base64.b64decode(pred["mask"]["data"]))))
    cli_predict(seg_runs["seg2d"], img, tmp_path / "2d")
    assert np.array_equal(served, np.asarray(Image.open(tmp_path / "2d" / f"{file_ref(img)}.png")))

    zipped = H.series_zip(seg_runs["series"])
    r = predict(client, keys["clinician"], "seg3d", zipped, mask_format="nifti")
    assert r.status_code == 200, r.text
    (pred,) = r.json()["predictions"]
    assert r.json()["input"]["kind"] == "dicom-series" and pred["shape"] == [8, 24, 24]
    (tmp_path / "m.nii.gz").write_bytes(base64.b64decode(pred["mask"]["data"]))
    served = np.asarray(nib.load(str(tmp_path / "m.nii.gz")).dataobj)
    cli_predict(seg_runs["seg3d"], seg_runs["series"], tmp_path / "3d")
    ref = nib.load(str(tmp_path / "3d" / f"{file_ref(seg_runs['series'])}.nii.gz"))
    assert np.array_equal(served, np.asarray(ref.dataobj))
    r = predict(client, keys["clinician"], "seg3d", zipped)  # default: DICOM in, DICOM SEG out
    fmt = r.json()["predictions"][0]["mask"]["format"]
    assert fmt == ("dicom-seg" if served.any() else "nifti")


def test_service_routes_metrics_and_openapi(service):
    client, keys, _ = service
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["status"] == "ready"
    models = client.get("/v1/models", headers=auth(keys["clinician"])).json()["models"]
    assert {m["name"]: m["task"] for m in models}["seg3d"] == "segmentation"
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/v1/models/{name}/predict"]["post"]["requestBody"]
    assert body["content"]["multipart/form-data"]["schema"]["required"] == ["file"]

    def count() -> float:
        text = client.get("/metrics").text
        assert "scandx_request_seconds_bucket" in text and "# TYPE scandx_requests" in text
        rows = [line for line in text.splitlines() if line.startswith("scandx_requests_total{")]
        return sum(float(line.split()[-1]) for line in rows if 'endpoint="models"' in line)

    before = count()
    client.get("/v1/models", headers=auth(keys["clinician"]))
    client.get("/v1/models")  # 401, counted too
    assert count() == before + 2
    r = client.get("/")
    assert r.headers["x-content-type-options"] == "nosniff"


def test_keys_roles_and_revocation(service):
    client, keys, _ = service
    assert client.get("/v1/models").status_code == 401
    assert client.get("/v1/models", headers=auth("sdx_wrong")).status_code == 401
    assert client.get("/v1/models", headers={"X-API-Key": keys["clinician"]}).status_code == 200
    assert predict(client, keys["admin"], "nope", H.png_bytes()).status_code == 404
    for path in ("/v1/audit", "/v1/keys"):
        r = client.get(path, headers=auth(keys["clinician"]))
        assert r.status_code == 403 and "admin" in r.json()["detail"]
    r = client.post("/v1/keys", params={"role": "clinician"}, headers=auth(keys["clinician"]))
    assert r.status_code == 403
    made = client.post("/v1/keys", params={"role": "clinician", "label": "ward"},
                       headers=auth(keys["admin"])).json()  # fmt: skip
    assert client.get("/v1/models", headers=auth(made["key"])).status_code == 200
    listed = client.get("/v1/keys", headers=auth(keys["admin"])).json()["keys"]
    assert made["key_id"] in {k["key_id"] for k in listed} and "key" not in listed[0]
    assert client.delete(f"/v1/keys/{made['key_id']}", headers=auth(keys["admin"])).json()
    r = client.get("/v1/models", headers=auth(made["key"]))
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    bad = client.post("/v1/keys", params={"role": "root"}, headers=auth(keys["admin"]))
    assert bad.status_code == 422


def test_every_request_is_audited_without_any_patient_identifier(service, phantoms, caplog):
    import pydicom

    client, keys, db = service
    ds = pydicom.dcmread(str(next(phantoms.rglob("*.dcm"))))
    ds.PatientName, ds.PatientID = f"{H.MARK}^DOE", f"{H.MARK}-42"
    buf = io.BytesIO()
    ds.save_as(buf)
    before = len(audit_rows(db))
    caplog.set_level(logging.DEBUG)
    answers = [
        predict(client, keys["clinician"], "cls", buf.getvalue(), name=f"{H.MARK}.dcm"),
        predict(client, keys["clinician"], "cls", b"junk" * 300, name=f"{H.MARK}.png"),
        predict(client, keys["clinician"], "cls", H.huge_png(), name=f"{H.MARK}.png"),
        client.get("/v1/models", headers=auth("sdx_nope")),
        client.get("/v1/models", headers=auth(keys["clinician"])),
    ]
    assert [a.status_code for a in answers] == [200, 415, 422, 401, 200]
    rows = audit_rows(db)[before:]
    assert len(rows) == len(answers)  # one record per /v1 request
    for row in rows:
        assert H.MARK not in " ".join(map(str, row))
    assert H.MARK not in caplog.text
    recs = client.get("/v1/audit", params={"limit": 5}, headers=auth(keys["admin"])).json()
    ok = recs["records"][-1]  # newest first: the DICOM prediction is the oldest of five
    assert ok["status"] == 200 and ok["model"] == "cls" and len(ok["input_sha256"]) == 64
    assert ok["key_id"] and ok["model_version"] and len(ok["weights_sha256"]) == 64
    assert ok["latency_ms"] > 0 and ok["summary"]["labels"]
    assert recs["records"][1]["status"] == 401


def test_audit_filters_by_time_and_model(service):
    client, keys, _ = service
    predict(client, keys["clinician"], "seg2d", b"not an image at all" * 40)
    get = lambda **p: client.get("/v1/audit", params=p, headers=auth(keys["admin"])).json()  # noqa: E731
    seg = get(model="seg2d", limit=1000)["records"]
    assert seg and {r["model"] for r in seg} == {"seg2d"}
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    assert get(since=future)["records"] == []
    assert get(until=past)["records"] == []
    assert len(get(since=past, limit=3)["records"]) == 3


def test_limits_413_422_415(service):
    client, keys, _ = service
    h = auth(keys["clinician"])
    big = b"\x89PNG" + b"\x00" * (3 << 20)
    r = predict(client, keys["clinician"], "cls", big)
    assert r.status_code == 413 and "upload limit of 2,097,152 bytes" in r.json()["detail"]

    def chunks():
        for _ in range(48):
            yield b"x" * 65536

    r = client.post("/v1/models/cls/predict", content=chunks(),
                    headers={**h, "content-type": "multipart/form-data; boundary=zz"})  # fmt: skip
    assert r.status_code == 413
    r = predict(client, keys["clinician"], "cls", H.huge_png(2000, 2000))
    assert r.status_code == 422 and "limit of 2,000,000" in r.json()["detail"]
    r = client.post("/v1/models/cls/predict", content=H.png_bytes(),
                    headers={**h, "content-type": "image/png"})  # fmt: skip
    assert r.status_code == 415 and "multipart/form-data" in r.json()["detail"]
    r = predict(client, keys["clinician"], "cls", b"GIF89a" + b"\x00" * 600)
    assert r.status_code == 415
    r = predict(client, keys["clinician"], "seg2d", H.nifti_bytes())  # a 3D volume to 2D model
    assert r.status_code == 422 and "\n" not in r.json()["detail"]


def test_scandx_serve_refuses_an_open_address_without_keys_and_serves_tls(quick_run, tmp_path):
    import httpx

    db = f"sqlite:///{tmp_path / 'audit.db'}"
    r = scandx("serve", str(quick_run), "--host", "0.0.0.0", "--db", db)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "refusing to listen on 0.0.0.0 without API keys" in lines[0]
    made = scandx("keys", "create", "--role", "admin", "--db", db)
    assert made.returncode == 0, made.stderr
    key = made.stdout.splitlines()[0].strip()
    cert, pem = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(pem), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    args = [str(quick_run), "--host", "0.0.0.0", "--db", db]
    with LiveServer([*args, "--tls-cert", str(cert), "--tls-key", str(pem)], tmp_path / "log",
                    scheme="https") as server:  # fmt: skip
        r = httpx.get(server.url + "/v1/models", headers=auth(key), verify=str(cert))
        assert r.status_code == 200 and r.json()["models"][0]["name"] == quick_run.name
        with pytest.raises(httpx.HTTPError):  # plain HTTP is not spoken
            httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5)
