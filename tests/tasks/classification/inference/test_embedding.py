"""The classifier's Embedder: normalised penultimate features of the run's Predictor,
and an ensemble's vectors whose inner product is the mean of its members' cosines."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from scandx.tasks.classification.data.images import InputContract
from scandx.tasks.classification.inference.embedding import ClassifierEmbedder
from scandx.tasks.classification.inference.ood import penultimate_features


def net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, 12), torch.nn.ReLU(), torch.nn.Linear(12, 2)
    ).eval()


def fake_predictor(members=None, seed=0):
    contract = InputContract(size=[8, 8])
    p = SimpleNamespace(model=net(seed), contract=contract, info={"sha256": f"w{seed}"})
    if members:
        p.members = members
    return p


def cosine(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_one_network_gives_unit_penultimate_features(tmp_path):
    p = fake_predictor()
    e = ClassifierEmbedder(p, tmp_path)
    x = torch.randn(5, 1, 8, 8)
    v = e.embed(x)
    assert e.space["kind"] == "classifier-penultimate" and e.space["dim"] == 12
    assert e.space["run_sha256"] == "w0" and v.shape == (5, 12) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-6)
    f = penultimate_features(p.model, x)
    assert np.allclose(v[1] @ v[2], cosine(f[1], f[2]), atol=1e-5)


def test_an_ensemble_is_the_mean_of_its_members_similarities(tmp_path):
    a, b = fake_predictor(seed=1), fake_predictor(seed=2)
    e = ClassifierEmbedder(fake_predictor(members=[a, b], seed=9), tmp_path)
    x = torch.randn(3, 1, 8, 8)
    v = e.embed(x)
    assert v.shape == (3, 24) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-6)
    fa, fb = penultimate_features(a.model, x), penultimate_features(b.model, x)
    mean_cos = (cosine(fa[0], fa[1]) + cosine(fb[0], fb[1])) / 2
    assert np.isclose(v[0] @ v[1], mean_cos, atol=1e-5)
