"""Similar-case retrieval: quality on PneumoniaMNIST, and the approximate index at scale.

    python benchmarks/retrieval.py --npz ../shared/data/medmnist/pneumoniamnist.npz \\
        --time-budget 300 --vectors 1000000 --out retrieval.json

(a) Quality: every PneumoniaMNIST test image queries the training images; a result is
relevant when it has the query's label. precision@10 and mAP (over the full ranking of
the training set, exact search) for raw pixels, an autoencoder (``scandx pretrain
--method autoencoder``), self-supervised (``scandx pretrain --method simclr``) and
supervised (``scandx train``) embeddings, each run given ``--time-budget`` seconds. A
row whose command this checkout lacks is skipped with a message.

(b) Scale: ``--vectors`` synthetic vectors (clustered Gaussian, ``--dim``, unit length),
indexed as ``scandx embed`` indexes them above its threshold (IVF-Flat, parameters from
n: ``retrieval.index_store.choose_search``) and exactly (IndexFlatIP): recall@10 of the
approximate search against the exact one over ``--queries`` fresh queries, build time,
and query latency in ms per query, as one batch and one query at a time.

Tiny settings prove it runs (``--vectors 20000 --time-budget 10``); figures want a quiet
machine (latency depends on the cores FAISS can use; their count is printed).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scandx.core.run_dir import RunDir
from scandx.retrieval.embed import prepare_display
from scandx.retrieval.index_store import build_faiss, choose_search, faiss_search
from scandx.retrieval.metrics import (
    label_relevance,
    mean_average_precision,
    precision_at_k,
    recall_at_k,
)
from scandx.retrieval.pixels import PixelEmbedder
from scandx.tasks import task_for_run
from scandx.tasks.classification.data.images import read_case
from scandx.tasks.classification.data.sources import load_source

log = logging.getLogger("benchmark.retrieval")
K = 10


def scandx(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scandx", "-q", *args], capture_output=True, text=True
    )


def has_command(name: str) -> bool:
    return scandx(name, "--help").returncode == 0


def embed_split(embedder: Any, cases: list) -> np.ndarray:
    out, batch = [], []
    for case in cases:
        batch.append(prepare_display(embedder, read_case(case), case.path))
        if len(batch) == 256:
            out.append(embedder.embed(torch.stack(batch)))
            batch = []
    if batch:
        out.append(embedder.embed(torch.stack(batch)))
    return np.concatenate(out)


def quality(embedder: Any, train: list, test: list) -> dict[str, float]:
    x, q = embed_split(embedder, train), embed_split(embedder, test)
    y = np.array([int(c.target) for c in train])
    yq = np.array([int(c.target) for c in test])
    ranked = np.argsort(-(q @ x.T), axis=1, kind="stable")  # unit vectors: cosine
    rel = label_relevance(yq, ranked, y)
    n_rel = np.array([(y == t).sum() for t in yq])
    return {
        "precision_at_10": precision_at_k(rel, K),
        "map": mean_average_precision(rel, n_rel),
        "chance_precision": float(np.mean([(y == t).mean() for t in yq])),
        "dim": int(x.shape[1]),
    }


def quality_rows(npz: Path, work: Path, budget: float) -> list[dict[str, Any]]:
    manifest = load_source(npz)
    train, test = manifest.in_split("train"), manifest.in_split("test")
    rows: list[dict[str, Any]] = []
    runs = [
        ("autoencoder", "pretrain", ["--method", "autoencoder"]),
        ("self-supervised (simclr)", "pretrain", ["--method", "simclr"]),
        ("supervised", "train", []),
    ]
    start = time.perf_counter()
    rows.append({"embedding": "raw pixels (28x28)", **quality(PixelEmbedder(28), train, test)})
    rows[-1]["seconds"] = round(time.perf_counter() - start, 1)
    for name, command, extra in runs:
        if not has_command(command):
            msg = f"skipped: `scandx {command}` is not in this checkout"
            print(f"{name}: {msg}")
            rows.append({"embedding": name, "skipped": msg})
            continue
        run = work / name.split()[0]
        start = time.perf_counter()
        args = [command, "--data", str(npz), "--out", str(run), "--time-budget", str(budget)]
        done = None if (run / "model").is_dir() else scandx(*args, *extra)  # reuse a run
        if done is not None and done.returncode != 0:
            msg = f"skipped: scandx {command} failed: {done.stderr.strip()[-300:]}"
            print(f"{name}: {msg}")
            rows.append({"embedding": name, "skipped": msg})
            continue
        embedder = task_for_run(run).load_embedder(RunDir(run))
        rows.append({"embedding": name, **quality(embedder, train, test)})
        rows[-1]["seconds"] = round(time.perf_counter() - start, 1)
        print(rows[-1])
    return rows


def synthetic(n: int, dim: int, seed: int, centres: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, dim)).astype(np.float32)
    x = np.empty((n, dim), np.float32)
    for i in range(0, n, 100_000):  # in blocks: a million rows without a float64 copy
        m = min(100_000, n - i)
        x[i : i + m] = c[rng.integers(0, centres, m)] + 0.5 * rng.standard_normal(
            (m, dim), np.float32
        )
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, c


def latency(index: Any, search: dict, queries: np.ndarray, singles: int) -> dict[str, float]:
    start = time.perf_counter()
    faiss_search(index, search, queries, K)
    batch = (time.perf_counter() - start) * 1000 / len(queries)
    times = []
    for q in queries[:singles]:
        t = time.perf_counter()
        faiss_search(index, search, q[None], K)
        times.append((time.perf_counter() - t) * 1000)
    return {
        "ms_per_query_batch": round(batch, 4),
        "ms_per_query_single_median": round(float(np.median(times)), 4),
    }


def scale_rows(n: int, dim: int, n_queries: int, singles: int, seed: int) -> dict[str, Any]:
    import faiss

    x, _ = synthetic(n, dim, seed)
    q, _ = synthetic(n_queries, dim, seed + 1)
    approx_plan = choose_search(n, True, exact_below=min(n, 20_000))
    exact_plan = choose_search(n, True, exact_below=n + 1)
    out: dict[str, Any] = {"vectors": n, "dim": dim, "queries": n_queries,
                           "faiss_threads": faiss.omp_get_max_threads()}  # fmt: skip
    results = {}
    for name, plan in (("exact", exact_plan), ("approximate", approx_plan)):
        start = time.perf_counter()
        index = build_faiss(x, plan, seed)
        built = time.perf_counter() - start
        results[name] = faiss_search(index, plan, q, K)[1]
        out[name] = {
            "search": plan,
            "build_seconds": round(built, 2),
            **latency(index, plan, q, singles),
        }
        if name == "approximate":  # recall and speed against the cells visited per query
            out["nprobe_sweep"] = [
                {"nprobe": p, "recall_at_10": recall_at_k(found, results["exact"], K), **speed}
                for p in sorted({8, 16, 32, 64, 128, 256, 512, plan["nprobe"]})
                if p <= plan["nlist"]
                for sweep in [{**plan, "nprobe": p}]
                for found in [faiss_search(index, sweep, q, K)[1]]
                for speed in [latency(index, sweep, q, singles)]
            ]
        del index
    out["recall_at_10"] = recall_at_k(results["approximate"], results["exact"], K)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--npz", default="../shared/data/medmnist/pneumoniamnist.npz")
    ap.add_argument("--time-budget", type=float, default=300.0, help="seconds per trained run")
    ap.add_argument("--vectors", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--single-queries", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--skip-scale", action="store_true")
    ap.add_argument("--work", default=None, help="folder for the runs (default: a temporary one)")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    report: dict[str, Any] = {"machine": platform.platform(), "processor": platform.processor()}
    with tempfile.TemporaryDirectory(prefix="scandx-retrieval-") as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        if not args.skip_quality:
            report["quality"] = quality_rows(Path(args.npz), work, args.time_budget)
            print("\n| embedding | precision@10 | mAP | chance |\n|---|---|---|---|")
            for r in report["quality"]:
                if "skipped" in r:
                    print(f"| {r['embedding']} | {r['skipped']} | | |")
                else:
                    print(f"| {r['embedding']} | {r['precision_at_10']:.3f} | {r['map']:.3f} | "
                          f"{r['chance_precision']:.3f} |")  # fmt: skip
    if not args.skip_scale:
        s = scale_rows(args.vectors, args.dim, args.queries, args.single_queries, args.seed)
        report["scale"] = s
        a = s["approximate"]["search"]
        print(f"\n{s['vectors']} vectors x {s['dim']}, {s['queries']} queries, "
              f"{s['faiss_threads']} FAISS threads; approximate: IVF-Flat nlist {a.get('nlist')}, "
              f"nprobe {a.get('nprobe')}; recall@10 {s['recall_at_10']:.4f}")  # fmt: skip
        print(
            "| index | build s | ms/query (batch) | ms/query (single, median) |\n|---|---|---|---|"
        )
        for name in ("exact", "approximate"):
            r = s[name]
            print(f"| {name} | {r['build_seconds']} | {r['ms_per_query_batch']} | "
                  f"{r['ms_per_query_single_median']} |")  # fmt: skip
        print("\n| nprobe | recall@10 | ms/query (batch) | ms/query (single) |\n|---|---|---|---|")
        for r in s["nprobe_sweep"]:
            print(f"| {r['nprobe']} | {r['recall_at_10']:.4f} | {r['ms_per_query_batch']} | "
                  f"{r['ms_per_query_single_median']} |")  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
