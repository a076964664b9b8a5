"""An ensemble of the k fold models of a cross-validated run, behind the Predictor interface.

``RUN/model/model.json`` of a ``train --folds k`` run lists its members
(``RUN/folds/fold<i>/model``); every member is a complete, checksummed model whose
probabilities are calibrated on its own validation fold. The ensemble averages those
calibrated probabilities. Its "logits" are the log of the mean (logit for multi-label),
so the shared code paths (``to_probabilities``, thresholds, reports) apply unchanged.
Out-of-distribution: the mean over members of score / member threshold, flagged above 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from scandx.core.predictor import ensemble_members
from scandx.tasks.classification.inference.model_io import load_model
from scandx.tasks.classification.inference.model_schema import check_classifier_info
from scandx.tasks.classification.inference.predictor import Predictor


class EnsemblePredictor(Predictor):
    def __init__(self, members: list[Predictor], info: dict[str, Any], device: str = "cpu"):
        super().__init__(members[0].model, info, device)
        self.members = members
        self.runtime = members[0].runtime

    @classmethod
    def from_members(
        cls,
        model_dir: Path,
        info: dict[str, Any],
        device: str = "cpu",
        networks: dict[Path, torch.nn.Module] | None = None,
    ):
        """``networks``: what scores each member (by its resolved model folder) in place
        of its PyTorch network (ONNX Runtime sessions, ``export.onnx_runtime``)."""
        check_classifier_info(info, Path(model_dir) / "model.json", single=False)
        members = []
        for member_dir in ensemble_members(model_dir, info):  # each checked by sha256
            model, member_info = load_model(member_dir)
            network = networks[member_dir.resolve()] if networks else None
            members.append(Predictor(model, member_info, device, network))
        return cls(members, info, device)

    def _mean_to_logits(self, probs: np.ndarray) -> torch.Tensor:
        p = torch.as_tensor(probs, dtype=torch.float32).clamp(1e-7, 1 - 1e-7)
        return torch.logit(p) if self.task == "multilabel" else torch.log(p)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self._mean_to_logits(np.mean([m.probabilities(x) for m in self.members], axis=0))

    def logits_and_features(self, x: torch.Tensor) -> tuple[torch.Tensor, np.ndarray | None]:
        """Ensemble logits and, in place of features, the ensemble OOD scores."""
        probs, scores = [], []
        for m in self.members:
            logits, features = m.logits_and_features(x)
            probs.append(m.to_probabilities(logits))
            s = m.ood_scores(features=features)
            if s is not None:
                scores.append(s / m.info["ood"]["threshold"])
        ood = np.mean(scores, axis=0) if len(scores) == len(self.members) else None
        return self._mean_to_logits(np.mean(probs, axis=0)), ood

    def ood_scores(
        self, x: torch.Tensor | None = None, features: np.ndarray | None = None
    ) -> np.ndarray | None:
        if features is not None:
            return features  # already the ensemble scores (see logits_and_features)
        if x is None:
            return None
        return self.logits_and_features(x)[1]
