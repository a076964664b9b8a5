"""Classification through the preprocessed cache: each image decoded once per train run,
nothing decoded by a later run with the same plan, and the same tensors as without it."""

from __future__ import annotations

import multiprocessing as mp
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scandx.data import cache as cache_mod
from scandx.tasks.classification.data import images
from scandx.tasks.classification.data.images import (
    InputContract,
    load_cases,
    model_input,
    preprocess,
    read_case,
)
from scandx.tasks.classification.data.manifest import Case
from scandx.tasks.classification.data.sources import load_source
from scandx.tasks.classification.data.splits import assign_splits
from scandx.tasks.classification.planner import fingerprint

CONTRACT = InputContract(size=[24, 24], mean=[0.4], std=[0.2])


@pytest.fixture
def counted(monkeypatch):
    """Counts of read_case (decoding) and preprocess calls."""
    calls = {"read": 0, "prep": 0}
    real_read, real_prep = images.read_case, images.preprocess

    def read(case):
        calls["read"] += 1
        return real_read(case)

    def prep(*a, **k):
        calls["prep"] += 1
        return real_prep(*a, **k)

    monkeypatch.setattr(images, "read_case", read)
    monkeypatch.setattr(images, "preprocess", prep)
    return calls


def _manifest(root):
    return assign_splits(load_source(root), seed=0)


def _small_folder(tmp_path: Path, phantoms: Path, n: int = 6) -> Path:
    """A copy of a few phantom images per class (DICOM and PNG)."""
    out = tmp_path / "data"
    for cls in ("normal", "lesion"):
        files = sorted(p for p in (phantoms / cls).rglob("*") if p.is_file())[:n]
        for f in files:
            dst = out / cls / f.relative_to(phantoms / cls)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, dst)
    return out


def test_cached_inputs_are_bit_identical(phantoms, own_cache):
    m = _manifest(phantoms)
    cases = m.cases[:12]
    direct = torch.stack([preprocess(read_case(c), CONTRACT, c.path) for c in cases])
    cold, kept, _ = load_cases(cases, CONTRACT)
    warm, _, _ = load_cases(cases, CONTRACT)
    assert kept == cases
    assert torch.equal(cold, direct) and torch.equal(warm, direct)


def test_train_decodes_once_and_a_second_run_decodes_nothing(
    tmp_path, phantoms, own_cache, counted
):
    root = _small_folder(tmp_path, phantoms)
    m = _manifest(root)
    n = len(m.cases)
    fp = fingerprint(m)
    load_cases(m.in_split("train"), CONTRACT)
    load_cases(m.in_split("val"), CONTRACT)
    assert counted["read"] == n  # the fingerprint decoded, loading reused its pixels
    m2 = _manifest(root)
    assert fingerprint(m2) == fp
    x, _, _ = load_cases(m2.in_split("train"), CONTRACT)
    assert counted["read"] == n and counted["prep"] == len(m.in_split("train")) + len(
        m.in_split("val")
    )


def test_a_changed_file_misses_alone_and_a_changed_size_redoes_all(
    tmp_path, phantoms, own_cache, counted
):
    root = _small_folder(tmp_path, phantoms)
    m = _manifest(root)
    load_cases(m.cases, CONTRACT)
    first = dict(counted)
    png = next(c.path for c in m.cases if c.path.endswith(".png"))
    Image.fromarray(np.full((32, 32), 7, np.uint8)).save(png)  # new content, same name
    x, _, _ = load_cases(m.cases, CONTRACT)
    assert counted["read"] - first["read"] == 1 and counted["prep"] - first["prep"] == 1
    changed = next(i for i, c in enumerate(m.cases) if c.path == png)
    assert torch.equal(x[changed], preprocess(read_case(m.cases[changed]), CONTRACT))
    before = dict(counted)
    bigger = InputContract(size=[20, 20], mean=[0.4], std=[0.2])
    load_cases(m.cases, bigger)  # every input again, from the cached pixels: no decoding
    assert counted["prep"] - before["prep"] == len(m.cases)
    assert counted["read"] == before["read"]


def test_npz_cases_are_keyed_by_array_and_index_and_not_cached(tmp_path, own_cache):
    """An .npz case is a slice of an array already in memory: keyed apart if ever cached,
    but given no entry (one per image would cost more than it saves)."""
    rng = np.random.default_rng(0)
    npz = tmp_path / "tiny.npz"
    np.savez(npz, train_images=rng.integers(0, 255, (4, 28, 28), dtype=np.uint8))
    cases = [
        Case(f"c{i}", f"p{i}", str(npz), 0, "train", {"npz_key": "train_images", "npz_index": i})
        for i in range(4)
    ]
    keys = {images.case_key(c) for c in cases}
    assert len(keys) == 4
    x, _, _ = load_cases(cases, CONTRACT)
    again, _, _ = load_cases(cases, CONTRACT)
    direct = torch.stack([preprocess(read_case(c), CONTRACT) for c in cases])
    assert torch.equal(x, direct) and torch.equal(again, direct)
    assert not own_cache.exists() or not any(p.is_file() for p in own_cache.rglob("*"))


def test_cache_off_decodes_every_time(tmp_path, phantoms, own_cache, counted, monkeypatch):
    monkeypatch.setenv("SCANDX_CACHE", "off")
    root = _small_folder(tmp_path, phantoms, n=4)
    m = _manifest(root)
    fingerprint(m)
    load_cases(m.cases, CONTRACT)
    assert counted["read"] == 2 * len(m.cases) and not own_cache.exists()


def test_damaged_entries_never_stop_loading(tmp_path, phantoms, own_cache):
    root = _small_folder(tmp_path, phantoms, n=4)
    m = _manifest(root)
    fp = fingerprint(m)
    good, _, _ = load_cases(m.cases, CONTRACT)
    for p in own_cache.rglob("*.npy"):  # every entry cut short
        p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    m2 = _manifest(root)
    assert fingerprint(m2) == fp
    again, _, _ = load_cases(m2.cases, CONTRACT)
    assert torch.equal(again, good)


def _load_in_child(root: str, cache_root: str, start) -> None:
    cache_mod.cache_root = lambda: Path(cache_root)  # the child's own module state
    start.wait()
    m = assign_splits(load_source(root), seed=0)
    for c in m.cases:
        model_input(c, CONTRACT, cache_mod.default_cache())


def test_two_processes_fill_one_cache_at_once(tmp_path, phantoms, own_cache):
    root = _small_folder(tmp_path, phantoms, n=4)
    ctx = mp.get_context("fork")
    start = ctx.Barrier(2)
    args = (str(root), str(own_cache), start)
    procs = [ctx.Process(target=_load_in_child, args=args) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    m = _manifest(root)
    cache = cache_mod.PreprocessedCache(own_cache)
    prep = images.preprocess_hash(CONTRACT)
    for c in m.cases:
        key = cache_mod.stable_hash("input", images.case_key(c), prep)
        hit = cache.get("cls-input", key, ("x",))
        assert hit is not None
        np.testing.assert_array_equal(hit["x"], preprocess(read_case(c), CONTRACT).numpy())


def test_train_then_train_and_evaluate_again(tmp_path, phantoms, own_cache, counted):
    """The workflow: one decode per image in ``train``; none in a second ``train`` or in
    ``evaluate`` on the same data (the test split's pixels were cached by the fingerprint)."""
    from scandx.tasks.classification.workflow import evaluate_run, train_run

    root = _small_folder(tmp_path, phantoms, n=8)
    n = len(load_source(root).cases)
    kw = {"time_budget_s": 2, "model": "simple-cnn"}
    train_run(root, tmp_path / "run1", **kw)
    assert counted["read"] == n
    train_run(root, tmp_path / "run2", **kw)
    evaluate_run(tmp_path / "run2", root, n_boot=10, gallery=0)
    assert counted["read"] == n
