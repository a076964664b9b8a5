"""Load on a real ``scandx serve`` process on 127.0.0.1: latency, overload, SIGKILL.

    .venv/bin/python benchmarks/serve_load.py [--requests 500] [--clients 8]
        [--run RUN --image PNG | --segmentation] [--kill-after 0.5]

Three phases, each a row of the table:

1. load: ``--requests`` predictions from ``--clients`` threads (httpx, one connection
   each), every upload a different PNG (one pixel changed); must be 0 errors; p50/p99
   latency and throughput;
2. overload: the server restarted with ``--max-queue 1`` and the same clients: each
   request is answered 200 or 503 with ``Retry-After``, never another 5xx, and the
   server stays up;
3. kill: load again; after ``--kill-after`` of the requests were answered the server is
   SIGKILLed, restarted on the same database, and every request answered 200 must have
   its audit record (found by the upload's unique sha256, status 200).

Without --run a classifier is trained on small phantoms first (``--segmentation``: a 2D
ellipse segmenter). Exit 1 when a check fails.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from tests.serve.live import LiveServer, scandx  # noqa: E402


def unique_pngs(image: Path, n: int) -> list[bytes]:
    """``n`` PNGs of ``image``, each with its own three first pixels (so its own sha256)."""
    import numpy as np
    from PIL import Image

    base = np.asarray(Image.open(image)).copy()
    out = []
    for i in range(n):
        px = base.copy()
        flat = px.reshape(-1, *px.shape[2:])
        flat[:3] = np.array([i & 255, (i >> 8) & 255, (i >> 16) & 255]).reshape(
            3, *([1] * (flat.ndim - 1))
        )
        buf = io.BytesIO()
        Image.fromarray(px).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def train(folder: Path, segmentation: bool) -> tuple[Path, Path]:
    run = folder / "run"
    if segmentation:
        from scandx.tasks.segmentation.synthetic import make_ellipse_folders

        data = make_ellipse_folders(folder / "data", n=12, size=32)
        image = data / "images" / "c000.png"
        extra: list[str] = []
    else:
        from scandx.tasks.classification.data.synthetic import make_phantom_dataset

        data = make_phantom_dataset(folder / "data", n_patients=40, size=32, seed=1)
        image = next(data.rglob("*.png"))
        extra = ["--model", "simple-cnn"]
    args = ["-q", "train", "--data", str(data), "--out", str(run), "--time-budget", "4", *extra]
    r = scandx(*args, timeout=600)
    if r.returncode != 0:
        raise SystemExit(f"training failed: {r.stderr.strip()}")
    return run, image


class Load:
    """Requests sent from threads; each outcome kept as (status, seconds, sha256, headers)."""

    def __init__(self, url: str, key: str, uploads: list[bytes], clients: int) -> None:
        self.url, self.key, self.uploads, self.clients = url, key, uploads, clients
        self.outcomes: list[tuple[int, float, str, dict]] = []
        self.lock = threading.Lock()
        self.answered = 0

    def run(self, stop: threading.Event | None = None) -> float:
        import httpx

        local = threading.local()

        def one(data: bytes) -> None:
            if stop is not None and stop.is_set():
                return
            if not hasattr(local, "client"):
                local.client = httpx.Client(timeout=120)
            sha = hashlib.sha256(data).hexdigest()
            t = time.perf_counter()
            try:
                r = local.client.post(
                    f"{self.url}/v1/models/model/predict",
                    headers={"Authorization": f"Bearer {self.key}"},
                    files={"file": ("image.png", data, "image/png")},
                )
                status, headers = r.status_code, dict(r.headers)
            except httpx.HTTPError:
                status, headers = 0, {}  # no answer (the server was killed)
            with self.lock:
                self.outcomes.append((status, time.perf_counter() - t, sha, headers))
                self.answered += status != 0

        t0 = time.perf_counter()
        with ThreadPoolExecutor(self.clients) as pool:
            list(pool.map(one, self.uploads))
        return time.perf_counter() - t0

    def statuses(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for s, *_ in self.outcomes:
            out[s] = out.get(s, 0) + 1
        return dict(sorted(out.items()))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def audited_shas(db_url: str) -> set[str]:
    from scandx.serve.store import Store

    found, offset = set(), 0
    with Store(db_url) as store:
        while rows := store.audit(limit=1000, offset=offset):
            found |= {r["input_sha256"] for r in rows if r["status"] == 200}
            offset += len(rows)
    return found


def phases(
    run: Path, image: Path, requests: int, clients: int, kill_after: float, work: Path
) -> list[dict]:
    from scandx.serve.store import Store

    db = f"sqlite:///{work / 'audit.db'}"
    with Store(db) as store:
        key = store.create_key("clinician", "load test")[0]
    uploads = unique_pngs(image, 3 * requests)
    base = [f"model={run}", "--db", db]
    rows = []

    with LiveServer(base, work / "server.log") as server:  # 1. load
        load = Load(server.url, key, uploads[:requests], clients)
        seconds = load.run()
        ok = [t for s, t, *_ in load.outcomes if s == 200]
        rows.append({
            "phase": "load", "requests": requests, "statuses": load.statuses(),
            "errors": requests - len(ok), "p50_ms": 1000 * percentile(ok, 50),
            "p99_ms": 1000 * percentile(ok, 99), "per_s": len(ok) / seconds,
            "rss_mb": server.rss_kib() / 1024, "alive": server.alive(),
            "ok": len(ok) == requests and server.alive(),
        })  # fmt: skip

    with LiveServer([*base, "--max-queue", "1"], work / "server.log") as server:  # 2. overload
        load = Load(server.url, key, uploads[requests : 2 * requests], clients)
        seconds = load.run()
        st = load.statuses()
        busy = [h for s, _, _, h in load.outcomes if s == 503]
        ok = [t for s, t, *_ in load.outcomes if s == 200]
        good = set(st) <= {200, 503} and all(h.get("retry-after", "").isdigit() for h in busy)
        rows.append({
            "phase": "overload", "requests": requests, "statuses": st,
            "errors": sum(n for s, n in st.items() if s not in (200, 503)),
            "p50_ms": 1000 * percentile(ok, 50), "p99_ms": 1000 * percentile(ok, 99),
            "per_s": len(ok) / seconds, "rss_mb": server.rss_kib() / 1024,
            "alive": server.alive(), "ok": good and bool(ok) and server.alive(),
        })  # fmt: skip

    server = LiveServer(base, work / "server.log").start()  # 3. kill mid-load
    load = Load(server.url, key, uploads[2 * requests :], clients)
    stop = threading.Event()

    def killer() -> None:
        while load.answered < max(1, int(kill_after * requests)):
            time.sleep(0.005)
        server.kill()
        stop.set()

    k = threading.Thread(target=killer)
    k.start()
    seconds = load.run(stop)
    k.join()
    answered = {sha for s, _, sha, _ in load.outcomes if s == 200}
    LiveServer(base, work / "server.log", port=server.port).start().stop()  # restart
    missing = answered - audited_shas(db)
    rows.append({
        "phase": "kill", "requests": len(load.outcomes), "statuses": load.statuses(),
        "errors": len(missing), "p50_ms": float("nan"), "p99_ms": float("nan"),
        "per_s": len(answered) / seconds, "rss_mb": float("nan"), "alive": False,
        "ok": not missing and bool(answered), "answered_200": len(answered),
        "missing_records": len(missing),
    })  # fmt: skip
    return rows


def report(rows: list[dict]) -> int:
    print(f"{'phase':<9} {'requests':>8} {'errors':>7} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'req/s':>7} {'RSS MB':>7}  statuses")  # fmt: skip
    for r in rows:
        st = ", ".join(f"{'none' if s == 0 else s}: {n}" for s, n in r["statuses"].items())
        print(f"{r['phase']:<9} {r['requests']:>8} {r['errors']:>7} {r['p50_ms']:>8.1f} "
              f"{r['p99_ms']:>8.1f} {r['per_s']:>7.1f} {r['rss_mb']:>7.0f}  {st}"
              f"{'' if r['ok'] else '  FAILED'}")  # fmt: skip
    kill = rows[-1]
    print(f"kill: {kill['answered_200']} requests answered 200 before SIGKILL, "
          f"{kill['missing_records']} without an audit record after the restart")  # fmt: skip
    print("errors: load = non-200 answers; overload = answers other than 200/503; "
          "kill = 200 answers without an audit record")  # fmt: skip
    return 0 if all(r["ok"] for r in rows) else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=500, help="requests per phase (500)")
    ap.add_argument("--clients", type=int, default=8, help="concurrent clients (8)")
    ap.add_argument("--run", type=Path, default=None, help="a run to serve (with --image)")
    ap.add_argument("--image", type=Path, default=None, help="the PNG to vary for --run")
    ap.add_argument("--segmentation", action="store_true", help="train a 2D segmenter")
    ap.add_argument("--kill-after", type=float, default=0.5, help="fraction answered (0.5)")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="scandx-serve-load-"))
    if args.run is None:
        args.run, args.image = train(work, args.segmentation)
    elif args.image is None:
        ap.error("--run needs --image (a PNG the model takes)")
    rows = phases(args.run, args.image, args.requests, args.clients, args.kill_after, work)
    return report(rows)


if __name__ == "__main__":
    raise SystemExit(main())
