"""Segmentation through the preprocessed cache (case_cache.py): memory-mapped cases, one
decode per case per train run, foreground locations stored, the same patches as before."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scandx.tasks.segmentation import case_cache
from scandx.tasks.segmentation.case_cache import FOREGROUND_SAMPLES, foreground_index, prepare
from scandx.tasks.segmentation.fingerprint import seg_fingerprint
from scandx.tasks.segmentation.infer import roi_box
from scandx.tasks.segmentation.plan import make_seg_plan
from scandx.tasks.segmentation.sources import load_seg_source
from scandx.tasks.segmentation.synthetic import make_ellipse_folders, make_ellipsoid_decathlon
from scandx.tasks.segmentation.train import SegData, sample_batch
from scandx.tasks.segmentation.volumes import read_case_arrays
from scandx.tasks.segmentation.workflow import assign_seg_splits, load_split


@pytest.fixture
def reads(monkeypatch):
    calls = []
    real = case_cache.read_case_arrays

    def counted(case, labels=None):
        calls.append(case.case_id)
        return real(case, labels)

    monkeypatch.setattr(case_cache, "read_case_arrays", counted)
    return calls


def _planned(data):
    m = load_seg_source(data)
    assign_seg_splits(m, 0.2, 0)
    fp = seg_fingerprint(m)
    return m, make_seg_plan(m, fp, time_budget_s=5, seed=0, probe=False)


@pytest.fixture(scope="module")
def ellipsoids(tmp_path_factory):
    out = tmp_path_factory.mktemp("ell")
    return make_ellipsoid_decathlon(out, n_train=5, n_test=1, shape=(24, 24, 12))


def test_each_case_is_read_once_per_train_and_never_again(ellipsoids, own_cache, reads):
    m, plan = _planned(ellipsoids)
    labelled = [c for c in m.cases if c.split != "test"]
    train = load_split(m.in_split("train"), m, plan)
    load_split(m.in_split("val"), m, plan)
    assert sorted(reads) == sorted(c.case_id for c in labelled)  # the fingerprint's reads
    assert all(isinstance(a, np.memmap) for a in train.images + train.labels)
    m2, plan2 = _planned(ellipsoids)
    again = load_split(m2.in_split("train"), m2, plan2)
    assert len(reads) == len(labelled)  # nothing decoded by a second run
    for a, b in zip(train.images, again.images, strict=True):
        np.testing.assert_array_equal(a, b)


def test_prepared_cases_equal_direct_preparation(ellipsoids, own_cache):
    m, plan = _planned(ellipsoids)
    plan.target_spacing = [1.5, 1.5, 2.0]  # resampling too
    cases = m.in_split("train")
    data = load_split(cases, m, plan)
    for i, c in enumerate(cases):
        direct = prepare(read_case_arrays(c, m.labels), plan)
        np.testing.assert_array_equal(data.images[i], direct.image)
        np.testing.assert_array_equal(data.labels[i], direct.label)
        np.testing.assert_array_equal(data.foreground[i], np.flatnonzero(direct.label > 0))
        assert data.boxes[i] == roi_box(None, direct.label.shape)


def test_patches_are_those_of_in_memory_data(tmp_path, own_cache, monkeypatch):
    """Foreground locations from the cache give the very patches a whole-label scan gave
    (under the per-class sample size)."""
    data = make_ellipse_folders(tmp_path / "e", n=8, size=48, seed=3)
    m, plan = _planned(data)
    cached = load_split(m.in_split("train"), m, plan)
    monkeypatch.setenv("SCANDX_CACHE", "off")
    memory = load_split(m.in_split("train"), m, plan)
    plain = SegData(
        [np.array(a) for a in memory.images],
        [np.array(a, np.int64) for a in memory.labels],
        memory.fovs,
    )
    assert not isinstance(memory.images[0], np.memmap)
    for seed in range(3):
        xa, ya = sample_batch(cached, plan, np.random.default_rng(seed))
        xb, yb = sample_batch(plain, plan, np.random.default_rng(seed))
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and ya.dtype == torch.int64


def test_foreground_sample_keeps_rare_classes_whole():
    lab = np.zeros((60, 60, 30), np.uint8)
    lab[5:55, 5:55, 5:25] = 1  # 50 000 voxels
    lab[0, 0, :4] = 2  # 4 voxels
    idx = foreground_index(lab)
    flat = lab.reshape(-1)[idx]
    assert (flat == 2).sum() == 4 and (flat == 1).sum() == FOREGROUND_SAMPLES
    assert np.all(np.diff(idx) > 0) and np.array_equal(idx, foreground_index(lab))
    assert foreground_index(np.zeros((4, 4), np.uint8)).size == 0


def test_damaged_prepared_entry_is_rebuilt(ellipsoids, own_cache):
    m, plan = _planned(ellipsoids)
    good = load_split(m.in_split("train"), m, plan)
    for p in (own_cache / "seg-prepared").rglob("*.npy"):
        cut = p.read_bytes()[:100]
        p.unlink()  # a new file (as a crash leaves one): the mapped old one stays valid
        p.write_bytes(cut)
    again = load_split(m.in_split("train"), m, plan)
    for a, b in zip(good.images, again.images, strict=True):
        np.testing.assert_array_equal(a, b)


def test_changed_plan_reprepares_without_reading(ellipsoids, own_cache, reads):
    m, plan = _planned(ellipsoids)
    load_split(m.in_split("train"), m, plan)
    n = len(reads)
    plan.target_spacing = [2.0, 2.0, 2.0]
    data = load_split(m.in_split("train"), m, plan)
    assert len(reads) == n  # new preparation from the cached read, no decoding
    assert data.images[0].shape[1:] == (12, 12, 12)
