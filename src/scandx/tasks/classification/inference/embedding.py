"""A trained classifier as an Embedder (``core/embedding.py``): one vector per image for
similar-case retrieval (``scandx embed`` / ``scandx similar``).

The vector is the network's penultimate features (the input of its last linear layer,
the same features the out-of-distribution score uses), L2-normalised, so the inner
product of two vectors is their cosine similarity. Inputs are prepared exactly as the
run's Predictor prepares them (``preprocess`` with the run's input contract).

An ensemble (``train --folds k``): each member's normalised features, concatenated and
divided by the square root of the member count. The result is again a unit vector, and
the inner product of two of them is the mean of the members' cosine similarities: the
members' mean, taken where it means something (the members' feature spaces are not
aligned with each other, so averaging the features themselves would mix unrelated
coordinates).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from scandx.tasks.classification.data.images import preprocess
from scandx.tasks.classification.inference.ood import penultimate_features
from scandx.tasks.classification.inference.predictor import Predictor

KIND = "classifier-penultimate"


def _normalised(features: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return (features / np.maximum(norms, 1e-12)).astype(np.float32)


class ClassifierEmbedder:
    """Penultimate features of a classification run's network(s), L2-normalised."""

    def __init__(self, predictor: Predictor, run: str | Path):
        self.predictor = predictor
        self.members: list[Predictor] = list(getattr(predictor, "members", None) or [predictor])
        probe = torch.zeros((1, predictor.contract.channels, *predictor.contract.size))
        dim = sum(penultimate_features(m.model, probe).shape[1] for m in self.members)
        c = predictor.contract
        self.space: dict[str, Any] = {
            "run": str(Path(run).resolve()),
            "run_sha256": str(predictor.info["sha256"]),
            "kind": KIND,
            "dim": int(dim),
            "normalised": True,
            "members": len(self.members),
            "input": {"spatial_dims": c.spatial_dims, "channels": c.channels, "size": list(c.size)},
        }

    @classmethod
    def from_run(cls, run: str | Path) -> ClassifierEmbedder:
        """The run's model (an ensemble for a cross-validated run), PyTorch on the CPU:
        retrieval embeds in fp32, whatever the machine, so vectors are comparable."""
        return cls(Predictor.from_run(run, "cpu"), run)

    def prepare(self, path: str | Path) -> torch.Tensor:
        return self.predictor.prepare_file(path)

    def prepare_display(self, arr: np.ndarray, where: str = "") -> torch.Tensor:
        """A display-space array (``read_image``/``read_case``) as the network's input."""
        return preprocess(arr, self.predictor.contract, where)

    @torch.no_grad()
    def embed(self, batch: torch.Tensor) -> np.ndarray:
        parts = [_normalised(penultimate_features(m.model, batch)) for m in self.members]
        if len(parts) == 1:
            return parts[0]
        return (np.hstack(parts) / np.sqrt(len(parts))).astype(np.float32)

    def ood_scores(self, batch: torch.Tensor) -> tuple[np.ndarray, float] | None:
        """The run's out-of-distribution score per prepared image and its flag threshold
        (None when the run has no OOD score)."""
        scores = self.predictor.ood_scores(batch)
        if scores is None:
            return None
        # an ensemble's score is already the members' mean of score / threshold
        threshold = (self.predictor.info.get("ood") or {}).get("threshold", 1.0)
        return np.asarray(scores, dtype=float), float(threshold)
