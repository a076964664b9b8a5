"""``scandx serve --workers 2``: two processes answer, share the audit database and
report one set of metrics (prometheus_client multiprocess mode)."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

from scandx.serve.store import Store
from tests.serve.live import LiveServer


def test_two_workers_share_audit_and_metrics(quick_run, phantoms, tmp_path):
    import httpx

    db = f"sqlite:///{tmp_path / 'serve.db'}"
    admin, _ = Store(db).create_key("admin")
    data = next(phantoms.rglob("*.png")).read_bytes()
    auth = {"Authorization": f"Bearer {admin}"}
    args = [f"m={quick_run}", "--db", db, "--workers", "2"]
    with LiveServer(args, tmp_path / "serve.log") as server:

        def post(_: int) -> int:
            files = {"file": ("x.png", data, "image/png")}
            url = server.url + "/v1/models/m/predict"
            return httpx.post(url, files=files, headers=auth, timeout=60).status_code

        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(post, range(8))) == [200] * 8
        metrics = httpx.get(server.url + "/metrics", timeout=10).text
        audit = httpx.get(server.url + "/v1/audit?model=m", headers=auth, timeout=10).json()
    line = re.search(
        r'scandx_requests_total\{endpoint="predict",model="m",status="200"\} (\S+)', metrics
    )
    assert line and float(line.group(1)) == 8.0  # both workers' counts, summed
    assert sum(r["status"] == 200 for r in audit["records"]) == 8
