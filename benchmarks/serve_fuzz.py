"""Fuzzed uploads against a real ``scandx serve`` process on 127.0.0.1.

    .venv/bin/python benchmarks/serve_fuzz.py [--cases 2000] [--run RUN] [--seed 0]

Hypothesis draws each upload: random bytes; real PNG/JPEG/TIFF/DICOM/NIfTI files and a
zip of a DICOM series, truncated or with bytes mutated; decompression bombs and headers
declaring huge sizes (PNG/TIFF 100,000^2, JPEG 65,535^2, DICOM 65,535^2 x 10,000 frames,
NIfTI 32,767^3); zip bombs (1 GiB in 1 MB, and members lying about their size); zips
with ``../`` names or 5,000 members; bodies over the upload limit; wrong content types
and forms. The server runs with small limits (1 MiB, 1,000,000 pixels). Checked: never
a 5xx, the server never dies, every refusal is one line, an over-size body answers 413,
an over-pixel header 422 naming the limit; its resident memory (VmRSS, sampled every
20 ms) stays under --max-rss-mb. Prints a table; exit 1 on any failure.

Without --run, a classifier is first trained on small phantoms (a few seconds).
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from tests.serve import hostile as H  # noqa: E402
from tests.serve.live import LiveServer, scandx  # noqa: E402

MAX_MB, MAX_PIXELS = 1, 1_000_000
SIZES = ("huge_png", "huge_tiff", "huge_jpeg", "huge_dicom", "huge_nifti", "png_3000")


def seeds(phantoms: Path | None) -> dict[str, bytes]:
    """Real files to truncate and mutate, and the hostile ones, built once."""
    import gzip

    out = {
        "png": H.png_bytes(),
        "png_rgb": H.png_bytes(mode="RGB"),
        "jpeg": H.raster_bytes("JPEG"),
        "tiff": H.raster_bytes("TIFF"),
        "dicom": H.dicom_bytes(),
        "nifti": H.nifti_bytes(),
        "nifti_gz": gzip.compress(H.nifti_bytes()),
        "zip_series": H.zip_of({f"{i}.dcm": H.dicom_bytes(seed=i) for i in range(3)}),
        "huge_png": H.huge_png(),
        "huge_tiff": H.huge_tiff(),
        "huge_jpeg": H.huge_jpeg(),
        "huge_dicom": H.huge_dicom(),
        "huge_nifti": H.huge_nifti(),
        "png_3000": H.huge_png(3000, 3000),
        "zip_bomb": H.zip_bomb(),
        "zip_bomb_lying": H.zip_bomb(declared=1000),
        "zip_many": H.many_members_zip(),
        "zip_traversal": H.traversal_zip(H.dicom_bytes()),
        "zip_nested": H.zip_of({"a.zip": H.zip_of({"a.dcm": H.dicom_bytes()})}),
    }
    if phantoms is not None:
        out["phantom_dcm"] = next(phantoms.rglob("*.dcm")).read_bytes()
        out["phantom_png"] = next(phantoms.rglob("*.png")).read_bytes()
    dicom_dir = ROOT / ".." / "shared" / "data" / "dicom" / "pydicom-test-files"
    for name in ("CT_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm", "MR_truncated.dcm"):
        if (dicom_dir / name).is_file():
            out[f"shared_{name}"] = (dicom_dir / name).read_bytes()
    return out


def upload_strategy(files: dict[str, bytes]):
    """(label, body bytes, how it is sent) drawn by Hypothesis."""
    from hypothesis import strategies as st

    names = sorted(files)
    whole = st.sampled_from(names).map(lambda n: (n, files[n]))

    @st.composite
    def truncated(draw):
        name = draw(st.sampled_from(names))
        data = files[name]
        return f"truncated:{name}", data[: draw(st.integers(0, max(len(data) - 1, 0)))]

    @st.composite
    def mutated(draw):
        name = draw(st.sampled_from(names))
        data = bytearray(files[name])
        lo = 132 if draw(st.booleans()) and len(data) > 200 else 0  # keep the magic bytes
        for _ in range(draw(st.integers(1, 64))):
            i = draw(st.integers(lo, min(len(data), 4096) - 1))  # headers: the first 4 KiB
            data[i] = draw(st.integers(0, 255))
        return f"mutated:{name}", bytes(data)

    @st.composite
    def spliced(draw):  # a real header followed by random bytes
        name = draw(st.sampled_from(names))
        keep = draw(st.integers(0, 1024))
        return f"spliced:{name}", files[name][:keep] + draw(st.binary(max_size=4096))

    random_bytes = st.binary(max_size=8192).map(lambda b: ("random", b))
    oversize = st.integers(MAX_MB * 2**20 + 1, 2 * MAX_MB * 2**20).map(
        lambda n: ("oversize", b"\x89PNG" + b"\x00" * n)
    )
    body = st.one_of(whole, truncated(), mutated(), spliced(), random_bytes, oversize)
    how = st.sampled_from(
        ["multipart"] * 6 + ["raw", "urlencoded", "wrong_field", "chunked", "no_file"]
    )
    return st.tuples(body, how)


def send(client, url: str, label: str, data: bytes, how: str):
    predict = f"{url}/v1/models/model/predict"
    if how == "multipart":
        return client.post(predict, files={"file": ("x", data, "application/octet-stream")})
    if how == "wrong_field":
        return client.post(predict, files={"image": ("x", data, "image/png")})
    if how == "no_file":
        return client.post(predict, data={"file": data[:100].hex()})
    if how == "raw":
        return client.post(predict, content=data, headers={"content-type": "image/png"})
    if how == "urlencoded":
        form = {"content-type": "application/x-www-form-urlencoded"}
        return client.post(predict, content=data, headers=form)
    boundary = "fuzzboundary"  # chunked: no Content-Length
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x"\r\n\r\n'
    parts = [head.encode(), data, f"\r\n--{boundary}--\r\n".encode()]
    return client.post(
        predict, content=iter(parts),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )  # fmt: skip


def expected(label: str, data: bytes, how: str, status: int) -> str | None:
    """What is wrong with this answer, or None."""
    if status >= 500:
        return f"{status} server error"
    sent = how in ("multipart", "chunked")
    if label == "oversize" and how != "no_file" and status != 413:
        return f"oversize body answered {status}, not 413"
    if sent and label in SIZES and status != 422:
        return f"{label} answered {status}, not 422"
    if sent and label in ("zip_bomb",) and status != 413:
        return f"zip bomb answered {status}, not 413"
    return None


def train_run(folder: Path) -> tuple[Path, Path]:
    from scandx.tasks.classification.data.synthetic import make_phantom_dataset

    data = make_phantom_dataset(folder / "phantoms", n_patients=40, size=32, seed=1)
    run = folder / "run"
    args = ["-q", "train", "--data", str(data), "--out", str(run), "--time-budget", "4"]
    r = scandx(*args, "--model", "simple-cnn", timeout=600)
    if r.returncode != 0:
        raise SystemExit(f"training failed: {r.stderr.strip()}")
    return run, data


def fuzz(run: Path, cases: int, seed: int, max_rss_mb: float, phantoms: Path | None) -> dict:
    import httpx
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hseed

    files = seeds(phantoms)
    work = Path(tempfile.mkdtemp(prefix="scandx-serve-fuzz-"))
    args = [f"model={run}", "--db", f"sqlite:///{work / 'audit.db'}",
            "--max-upload-mb", str(MAX_MB), "--max-pixels", str(MAX_PIXELS)]  # fmt: skip
    server = LiveServer(args, work / "server.log").start()
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.02):
            server.rss_kib()

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    statuses: collections.Counter = collections.Counter()
    failures: list[str] = []
    seen_kinds: collections.Counter = collections.Counter()
    start_rss = server.rss_kib()
    t0 = time.perf_counter()
    with httpx.Client(timeout=120) as client:

        @hseed(seed)
        @settings(max_examples=cases, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(upload_strategy(files))
        def one(case) -> None:
            (label, data), how = case
            seen_kinds[label.split(":")[0] if ":" in label else label] += 1
            try:
                r = send(client, server.url, label, data, how)
            except httpx.HTTPError as e:
                failures.append(f"{label}/{how}: no answer ({type(e).__name__})")
                if not server.alive():
                    raise SystemExit(f"the server died: {server.tail()}") from None
                return
            statuses[r.status_code] += 1
            problem = expected(label, data, how, r.status_code)
            if r.status_code != 200:
                detail = (
                    r.json().get("detail", "")
                    if "json" in r.headers.get("content-type", "")
                    else ""
                )
                if not isinstance(detail, str) or "\n" in detail or not detail:
                    problem = problem or f"refusal not one line: {str(detail)[:120]!r}"
                elif (
                    label in SIZES
                    and how in ("multipart", "chunked")
                    and "--max-pixels" not in detail
                ):
                    problem = problem or f"pixel refusal does not name the limit: {detail[:120]}"
            if problem:
                failures.append(f"{label}/{how}: {problem}")

        one()
    seconds = time.perf_counter() - t0
    stop.set()
    sampler.join()
    alive = server.alive()
    final_rss = server.rss_kib()
    server.stop()
    return {
        "cases": sum(statuses.values()) + sum(1 for f in failures if "no answer" in f),
        "statuses": dict(sorted(statuses.items())),
        "server_errors": sum(n for s, n in statuses.items() if s >= 500),
        "failures": failures,
        "alive": alive,
        "rss_start_mb": start_rss / 1024,
        "rss_peak_mb": server.peak_rss_kib / 1024,
        "rss_end_mb": final_rss / 1024,
        "max_rss_mb": max_rss_mb,
        "kinds": dict(seen_kinds.most_common()),
        "seconds": seconds,
        "log": str(work / "server.log"),
    }


def report(r: dict) -> int:
    print(f"{'cases':>6} {'5xx':>4} {'failures':>9} {'alive':>6} {'RSS start':>10} "
          f"{'RSS peak':>9} {'RSS end':>8} {'seconds':>8}")  # fmt: skip
    print(f"{r['cases']:>6} {r['server_errors']:>4} {len(r['failures']):>9} "
          f"{'yes' if r['alive'] else 'NO':>6} {r['rss_start_mb']:>8.0f}MB "
          f"{r['rss_peak_mb']:>7.0f}MB {r['rss_end_mb']:>6.0f}MB {r['seconds']:>8.1f}")  # fmt: skip
    print("statuses:", ", ".join(f"{s}: {n}" for s, n in r["statuses"].items()))
    print("inputs:", ", ".join(f"{k}: {n}" for k, n in r["kinds"].items()))
    for f in collections.Counter(r["failures"]).most_common(20):
        print(f"  FAIL x{f[1]}: {f[0]}")
    ok = not r["failures"] and r["alive"] and r["rss_peak_mb"] <= r["max_rss_mb"]
    print("OK" if ok else f"FAILED (server log: {r['log']})")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=2000, help="fuzzed uploads (2000)")
    ap.add_argument("--run", type=Path, default=None, help="a classification run to serve")
    ap.add_argument("--seed", type=int, default=0, help="Hypothesis seed")
    ap.add_argument("--max-rss-mb", type=float, default=1500, help="RSS bound (1500 MB)")
    args = ap.parse_args(argv)
    phantoms = None
    if args.run is None:
        args.run, phantoms = train_run(Path(tempfile.mkdtemp(prefix="scandx-fuzz-run-")))
    return report(fuzz(args.run, args.cases, args.seed, args.max_rss_mb, phantoms))


if __name__ == "__main__":
    raise SystemExit(main())
