"""The autoencoder's anomaly score (scandx predict PRETRAIN_RUN) and the encoder embedder."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scandx.cli import main
from scandx.core.run_dir import RunDir
from scandx.core.task import Options
from scandx.tasks import get_task, task_for_run
from scandx.tasks.classification.data.synthetic import phantom
from scandx.tasks.pretrain.workflow import pretrain_run


@pytest.fixture(scope="module")
def ae_run(phantom_npz: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("ae") / "run"
    options = Options(time_budget_s=6.0, seed=0, model="simple-cnn")
    pretrain_run(phantom_npz, run, options, "autoencoder")
    return run


def _png(path: Path, img: np.ndarray) -> str:
    Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(path)
    return str(path)


def test_anomaly_score_is_higher_on_images_of_another_kind(ae_run, tmp_path, capsys):
    rng = np.random.default_rng(5)
    inside = [_png(tmp_path / f"in{i}.png", phantom(rng, 28, i % 2 == 1)[0]) for i in range(6)]
    yy, xx = np.mgrid[0:28, 0:28]
    others = [
        _png(tmp_path / "noise.png", rng.random((28, 28))),
        _png(tmp_path / "checker.png", ((yy // 4 + xx // 4) % 2).astype(float)),
        _png(tmp_path / "inverted.png", 1 - phantom(rng, 28, False)[0]),
    ]
    out = tmp_path / "pred"
    assert main(["predict", str(ae_run), *inside, *others, "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert {"reconstruction_error", "anomaly_score", "anomaly"} <= set(rows[0])
    err = np.array([float(r["reconstruction_error"]) for r in rows])
    assert err[len(inside) :].min() > err[: len(inside)].max()
    assert all(r["anomaly"] == "True" for r in rows[len(inside) :])


def test_only_autoencoder_runs_score_anomalies(phantom_npz, tmp_path):
    from scandx.errors import ScandxError

    run = tmp_path / "mae"
    pretrain_run(phantom_npz, run, Options(time_budget_s=2.0, model="simple-cnn"), "mae")
    with pytest.raises(ScandxError, match="mae pretraining run has no anomaly score"):
        task_for_run(run).load_predictor(RunDir(run))


def test_embedder_gives_pooled_encoder_features(ae_run, tmp_path):
    embedder = get_task("pretrain").load_embedder(RunDir(ae_run))
    assert embedder.space["kind"] == "encoder-autoencoder"
    assert embedder.space["input"] == {"spatial_dims": 2, "channels": 1, "size": [28, 28]}
    rng = np.random.default_rng(1)
    files = [_png(tmp_path / f"{i}.png", phantom(rng, 28, False)[0]) for i in range(3)]
    import torch

    vectors = embedder.embed(torch.stack([embedder.prepare(f) for f in files]))
    assert vectors.shape == (3, embedder.space["dim"]) and vectors.dtype == np.float32
    # unit vectors, searched by cosine: unnormalised pooled features made the largest
    # vectors everyone's neighbours (benchmarks/retrieval.py)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert embedder.space["normalised"] is True
