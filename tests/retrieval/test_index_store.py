"""The index folder: FAISS answers against numpy brute force, the exact/approximate
choice at its threshold, atomic writing, and refusing what is not a whole index."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scandx.errors import ScandxError
from scandx.retrieval import index_store as store
from scandx.retrieval.metrics import recall_at_k


def clustered(n: int, dim: int = 16, centres: int = 10, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, dim)) * 3
    return (c[rng.integers(0, centres, n)] + rng.normal(size=(n, dim))).astype(np.float32)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("normalised", [True, False])
def test_exact_search_equals_numpy_brute_force(normalised):
    x = clustered(500)
    x = unit(x) if normalised else x
    q = x[:20] + np.float32(0.01)
    search = store.choose_search(len(x), normalised)
    assert search["kind"] == "exact"
    dist, rows = store.faiss_search(store.build_faiss(x, search), search, q, 5)
    if normalised:
        brute = 1.0 - q @ x.T
    else:
        brute = np.sqrt(((q[:, None, :] - x[None]) ** 2).sum(-1))
    order = np.argsort(brute, axis=1, kind="stable")[:, :5]
    assert (rows == order).all()
    assert np.allclose(dist, np.take_along_axis(brute, order, 1), atol=1e-4)


def test_exact_below_the_threshold_approximate_from_it():
    assert store.choose_search(999, True, exact_below=1000)["kind"] == "exact"
    plan = store.choose_search(1000, True, exact_below=1000)
    assert plan["kind"] == "approximate" and plan["faiss"] == "IndexIVFFlat"
    assert (
        plan["nlist"] <= 1000 // store.MIN_POINTS_PER_CELL and 1 <= plan["nprobe"] <= plan["nlist"]
    )
    big = store.choose_search(1_000_000, True)
    assert big["nlist"] == 4000 and big["nprobe"] == 253


def test_approximate_search_finds_most_true_neighbours():
    x = unit(clustered(4000, dim=32, centres=20))
    search = store.choose_search(len(x), True, exact_below=1000)
    index = store.build_faiss(x, search, seed=0)
    q = x[:100]
    _, approx = store.faiss_search(index, search, q, 10)
    exact = np.argsort(-(q @ x.T), axis=1)[:, :10]
    assert recall_at_k(approx, exact, 10) > 0.9
    assert (approx[:, 0] == np.arange(100)).mean() > 0.95  # each vector finds itself


def _write(out, n=30, exact_below=store.EXACT_BELOW):
    x = unit(clustered(n))
    rows = [{"row": i, "case_id": f"c{i}", "label": "a"} for i in range(n)]
    thumbs = [bytes([i]) * (i + 1) for i in range(n)]
    space = {"kind": "pixels", "normalised": True, "run_sha256": "", "dim": 16}
    return store.write_index(out, x, rows, thumbs, {"space": space, "images": {}}, exact_below)


def test_written_index_reads_back(tmp_path):
    m = _write(tmp_path / "ix", exact_below=20)
    assert m["search"]["kind"] == "approximate" and m["count"] == 30
    back = store.read_manifest(tmp_path / "ix")
    index, table = store.load_index(tmp_path / "ix", back)
    assert index.ntotal == 30 and table.num_rows == 30
    row = table.take([7]).to_pylist()[0]
    assert store.read_thumbnail(tmp_path / "ix", row) == bytes([7]) * 8
    assert [p.name for p in tmp_path.iterdir()] == ["ix"]  # no temporary folder left


def test_a_failed_write_leaves_the_old_index_and_no_debris(tmp_path, monkeypatch):
    _write(tmp_path / "ix")
    before = (tmp_path / "ix" / "manifest.json").read_text()

    def broken(*_a, **_k):
        raise OSError("disk full")

    import pyarrow.parquet as pq

    monkeypatch.setattr(pq, "write_table", broken)
    with pytest.raises(OSError, match="disk full"):
        _write(tmp_path / "ix", n=40)
    assert (tmp_path / "ix" / "manifest.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ix"]


def test_refuses_what_is_not_a_whole_index(tmp_path):
    with pytest.raises(ScandxError, match="not a scandx index"):
        store.read_manifest(tmp_path)
    _write(tmp_path / "ix")
    (tmp_path / "ix" / "index.faiss").write_bytes(b"\0" * 10)
    with pytest.raises(ScandxError, match="index.faiss does not match"):
        store.read_manifest(tmp_path / "ix")
    _write(tmp_path / "iy")
    m = json.loads((tmp_path / "iy" / "manifest.json").read_text())
    (tmp_path / "iy" / "manifest.json").write_text(json.dumps({**m, "format": "other"}))
    with pytest.raises(ScandxError, match="format"):
        store.read_manifest(tmp_path / "iy")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ScandxError, match="holds other files"):
        _write(tmp_path / "other")
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
