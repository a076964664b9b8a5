"""The preprocessed cache (data/cache.py): keys, memory-mapped hits, atomic concurrent
builds, damaged entries, unwritable folders, the size limit."""

from __future__ import annotations

import errno
import logging
import multiprocessing as mp
import os

import numpy as np
import pytest

from scandx.data import cache as cache_mod
from scandx.data.cache import PreprocessedCache, default_cache, file_digest, stable_hash


def _array(i: int) -> np.ndarray:
    return np.random.default_rng(i).random((3, 40, 50), dtype=np.float32)


def test_stable_hash_is_order_free_and_changes_with_any_field():
    a = stable_hash({"size": [64, 64], "mean": [0.5]}, 1)
    assert a == stable_hash({"mean": [0.5], "size": [64, 64]}, 1)
    assert a != stable_hash({"size": [32, 32], "mean": [0.5]}, 1)
    assert a != stable_hash({"size": [64, 64], "mean": [0.5]}, 2)


def test_file_digest_follows_content_not_name(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"one")
    b.write_bytes(b"one")
    assert file_digest(a) == file_digest(b)
    a.write_bytes(b"two!")  # a new size and mtime: the memo does not hide the change
    assert file_digest(a) != file_digest(b)
    series = tmp_path / "series"
    series.mkdir()
    (series / "1.dcm").write_bytes(b"x")
    before = file_digest(series)
    (series / "2.dcm").write_bytes(b"y")
    assert file_digest(series) != before


def test_hit_is_memory_mapped_and_equal(tmp_path):
    c = PreprocessedCache(tmp_path)
    built = []
    arrays, hit = c.fetch("k", "ab12", ("x",), lambda: built.append(1) or {"x": _array(1)})
    assert not hit and built == [1]
    again, hit = PreprocessedCache(tmp_path).fetch("k", "ab12", ("x",), lambda: 1 / 0)
    assert hit and isinstance(again["x"], np.memmap)
    np.testing.assert_array_equal(again["x"], _array(1))
    again["x"][0] = -1  # copy-on-write: the process's own page, never the file
    assert PreprocessedCache(tmp_path).get("k", "ab12", ("x",))["x"][0].max() >= 0
    # every part or none: a missing part is a miss
    c.put("k", "cd34", {"a": _array(2), "b": _array(3)})
    c.path("k", "cd34", "b").unlink()
    assert c.get("k", "cd34", ("a", "b")) is None


def _build_all(root: str, start, n: int) -> None:
    start.wait()
    c = PreprocessedCache(cache_mod.Path(root))
    for i in range(n):
        c.fetch(
            "conc", stable_hash(i), ("x", "y"), lambda i=i: {"x": _array(i), "y": _array(1000 + i)}
        )


def test_two_processes_building_the_same_entries_both_succeed(tmp_path):
    ctx = mp.get_context("fork")
    start = ctx.Barrier(2)
    procs = [ctx.Process(target=_build_all, args=(str(tmp_path), start, 30)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    c = PreprocessedCache(tmp_path)
    for i in range(30):
        got = c.get("conc", stable_hash(i), ("x", "y"))
        assert got is not None
        np.testing.assert_array_equal(got["x"], _array(i))
        np.testing.assert_array_equal(got["y"], _array(1000 + i))
    assert not list(tmp_path.rglob("*.tmp"))  # no temporary file left behind


@pytest.mark.parametrize("cut", [0, 60, 300])
def test_damaged_entry_is_detected_removed_and_rebuilt(tmp_path, caplog, cut):
    c = PreprocessedCache(tmp_path)
    c.put("k", "ee00", {"x": _array(5)})
    p = c.path("k", "ee00", "x")
    p.write_bytes(p.read_bytes()[:cut])  # a crash cut the file short
    fresh = PreprocessedCache(tmp_path)
    with caplog.at_level(logging.WARNING):
        arrays, hit = fresh.fetch("k", "ee00", ("x",), lambda: {"x": _array(5)})
    assert not hit and "damaged cache entry" in caplog.text
    np.testing.assert_array_equal(
        PreprocessedCache(tmp_path).get("k", "ee00", ("x",))["x"], _array(5)
    )


@pytest.mark.parametrize("err", [errno.EROFS, errno.ENOSPC, errno.EACCES])
def test_unwritable_folder_warns_once_and_goes_on(tmp_path, monkeypatch, caplog, err):
    c = PreprocessedCache(tmp_path)

    def refuse(path, arr):
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(c, "_write", refuse)
    with caplog.at_level(logging.WARNING):
        for i in range(3):
            arrays, hit = c.fetch("k", stable_hash(i), ("x",), lambda i=i: {"x": _array(i)})
            np.testing.assert_array_equal(arrays["x"], _array(i))
    assert not c.writable and caplog.text.count("cannot be written") == 1


def test_read_only_folder_for_real(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders; the refusal is simulated above")
    c = PreprocessedCache(tmp_path / "ro")
    (tmp_path / "ro").mkdir(mode=0o500)
    arrays, _ = c.fetch("k", "ff00", ("x",), lambda: {"x": _array(0)})
    assert not c.writable and arrays["x"].shape == (3, 40, 50)


def test_size_limit_evicts_least_recently_used_never_in_use(tmp_path):
    one = _array(0).nbytes + 128  # an entry's file, header included
    writer = PreprocessedCache(tmp_path, max_bytes=100 * one)
    for i in range(6):
        writer.put("k", stable_hash(i), {"x": _array(i)})
    for i, p in enumerate(sorted(tmp_path.rglob("*.npy"), key=lambda p: p.name)):
        os.utime(p, (1000 + i, 1000 + i))
    reader = PreprocessedCache(tmp_path, max_bytes=4 * one)
    assert reader.get("k", stable_hash(0), ("x",)) is not None  # used: touched and kept
    removed = reader.evict()
    left = {p.name.split(".")[0] for p in tmp_path.rglob("*.npy")}
    assert stable_hash(0) in left and removed == 3 and len(left) == 3
    assert reader.size_bytes() <= 4 * one


def test_environment_switches(tmp_path, monkeypatch):
    monkeypatch.setenv("SCANDX_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("SCANDX_CACHE_MAX_GB", "0.5")
    c = default_cache()
    assert c is not None and c.root == tmp_path / "preprocessed" and c.max_bytes == 500_000_000
    assert default_cache() is c  # one per process and setting
    monkeypatch.setenv("SCANDX_CACHE", "off")
    assert default_cache() is None
