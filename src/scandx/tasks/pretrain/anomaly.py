"""What a pretraining run gives after training: the autoencoder's anomaly score
(``scandx predict PRETRAIN_RUN files...``) and an Embedder for every classifier-family
run (``scandx embed``).

Anomaly score: the autoencoder's mean squared reconstruction error per image; an image
is flagged (``anomaly``) above a threshold fitted on the validation images as the
classifier's out-of-distribution threshold is (``inference.ood.flag_threshold``: an
upper tolerance bound, 90% confidence that at most 1% of in-distribution images exceed
it). ``anomaly_score`` is the error over that threshold (> 1 flags), as the OOD score.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from scandx.core.embedding import Embedder
from scandx.core.predictor import Predictor, checked_file
from scandx.core.pretrained import PretrainedEncoder, read_encoder
from scandx.core.run_dir import RunDir
from scandx.data.readers import read_image
from scandx.errors import ScandxError
from scandx.models import create_model
from scandx.models.autoencoder import pooled_features, reconstruction_error
from scandx.tasks.classification.data.images import InputContract, preprocess
from scandx.tasks.classification.inference.ood import FALSE_FLAG_RATE, flag_threshold
from scandx.tasks.pretrain.methods import build_autoencoder


def fit_threshold(val_errors: np.ndarray) -> tuple[float, str]:
    rule = (
        f"upper tolerance bound on the validation images' errors: 90% confidence that at "
        f"most {FALSE_FLAG_RATE:.0%} of in-distribution images are flagged"
    )
    return flag_threshold(val_errors, FALSE_FLAG_RATE), rule


def _prepare(contract: InputContract, path: str | Path) -> torch.Tensor:
    arr, _ = read_image(path)
    return preprocess(arr, contract, str(path))


class AnomalyPredictor(Predictor):
    """A pretrained autoencoder run -> reconstruction error and the anomaly flag."""

    task = "pretrain"

    def __init__(self, model: torch.nn.Module, info: dict[str, Any], device: str = "cpu"):
        self.model = model.to(device).eval()
        self.info, self.device = info, device
        self.contract = InputContract.from_dict(info["input"])
        self.threshold = float(info["autoencoder"]["anomaly"]["threshold"])

    @classmethod
    def from_run(cls, run: RunDir, device: str | None = None) -> AnomalyPredictor:
        enc = read_encoder(run.path)
        info = enc.info
        if info.get("method") != "autoencoder" or "autoencoder" not in info:
            raise ScandxError(
                f"predict: a {info.get('method')} pretraining run has no anomaly score (only "
                "--method autoencoder runs do); its encoder serves train --init and scandx embed",
                run.path,
            )
        ae = info["autoencoder"]
        path = checked_file(run.model_dir, ae.get("weights"), ae.get("sha256"), "autoencoder")
        model = build_autoencoder(info["network"], int(ae["code_dim"]))
        model.load_state_dict(load_file(str(path)))
        return cls(model, info, device or "cpu")

    def prepare(self, path: str | Path) -> torch.Tensor:
        return _prepare(self.contract, path)

    def errors(self, x: torch.Tensor) -> np.ndarray:
        """Reconstruction error per prepared image (N, C, *size)."""
        return reconstruction_error(self.model, x)

    def score(self, prepared: list[torch.Tensor]) -> list[float]:
        return [float(e) for e in self.errors(torch.stack(prepared))]

    def columns(self) -> list[str]:
        return ["reconstruction_error", "anomaly_score", "anomaly"]

    def write(self, path: str | Path, output: Any, out_dir: Path | None) -> dict[str, Any]:
        error = float(output)
        return {
            "reconstruction_error": error,
            "anomaly_score": error / self.threshold,
            "anomaly": bool(error > self.threshold),
        }


class EncoderEmbedder:
    """A pretraining run's encoder: the classifier's last feature map averaged over space,
    L2-normalised (``core.embedding.Embedder``). Unnormalised, these pooled ReLU features
    made the vectors of largest norm everyone's neighbours: precision@10 of PneumoniaMNIST
    test images 0.40 (autoencoder) and 0.69 (simclr) by inner product, 0.80 and 0.87 by
    cosine (benchmarks/retrieval.py)."""

    def __init__(self, enc: PretrainedEncoder) -> None:
        net = enc.network
        if net.get("family") != "classifier":
            raise ScandxError("embeddings: not a classifier-family pretraining run", enc.run)
        self.contract = InputContract.from_dict(enc.info["input"])
        self.model = create_model(
            net["model"],
            net["spatial_dims"],
            net["in_channels"],
            2,
            input_size=net["input_size"],
            **net.get("model_kwargs", {}),
        )
        missing, unexpected = self.model.load_state_dict(enc.state, strict=False)
        if unexpected or len(missing) > 2:  # only the output layer (weight, bias) is new
            raise ScandxError("embeddings: the encoder does not fit its own network", enc.run)
        self.model.eval()
        probe = torch.zeros(1, net["in_channels"], *net["input_size"])
        with torch.no_grad():
            dim = int(pooled_features(self.model, probe).shape[1])
        self.space: dict[str, Any] = {
            "run": str(enc.run),
            "run_sha256": enc.sha256,
            "kind": f"encoder-{enc.method}",
            "dim": dim,
            "normalised": True,
            "input": {
                "spatial_dims": self.contract.spatial_dims,
                "channels": self.contract.channels,
                "size": list(self.contract.size),
            },
        }

    def prepare(self, path: str | Path) -> torch.Tensor:
        return _prepare(self.contract, path)

    def prepare_display(self, arr: np.ndarray, where: str = "") -> torch.Tensor:
        """A display-space array (``read_image``/``read_case``) as the encoder's input."""
        return preprocess(arr, self.contract, where)

    @torch.no_grad()
    def embed(self, batch: torch.Tensor) -> np.ndarray:
        f = pooled_features(self.model, batch.float())
        return torch.nn.functional.normalize(f, dim=1).numpy().astype(np.float32)


def load_embedder(enc: PretrainedEncoder) -> Embedder:
    return EncoderEmbedder(enc)
