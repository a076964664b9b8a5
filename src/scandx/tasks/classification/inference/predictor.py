"""The classification Predictor (``core/predictor.py`` protocol): a trained run
directory -> calibrated probabilities, decisions at the validation-chosen thresholds,
test-time-augmentation spread and an out-of-distribution score.

Evaluate, predict and explain all go through this class, so an image gives the same
probability wherever it is scored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from scandx.core.predictor import Predictor as PredictorProtocol
from scandx.core.predictor import read_model_json
from scandx.data.readers import read_image
from scandx.tasks.classification.data.images import InputContract, preprocess, read_case
from scandx.tasks.classification.data.manifest import Case
from scandx.tasks.classification.evaluation.calibration import apply_calibration
from scandx.tasks.classification.inference.model_io import load_model
from scandx.tasks.classification.inference.ood import (
    as_features,
    capturing_penultimate,
    ood_features,
    ood_score,
    penultimate_features,
    tta_probabilities,
)
from scandx.tasks.classification.inference.scoring import predict_logits, probabilities


class Predictor(PredictorProtocol):
    def __init__(
        self,
        model: torch.nn.Module,
        info: dict[str, Any],
        device: str = "cpu",
        network: torch.nn.Module | None = None,
    ):
        """``model``: the PyTorch network (explanations need its gradients);
        ``network``: what scores, when not ``model`` itself (an ONNX Runtime session,
        ``export.onnx_runtime.OnnxNetwork``)."""
        self.model = model.to(device).eval()
        self.network = self.model if network is None else network.to(device).eval()
        self.runtime = "torch" if network is None else "onnx"
        self.info = info
        self.device = device
        self.contract = InputContract.from_dict(info["input"])
        self.task: str = info["task"]
        self.classes: list[str] = info["classes"]
        # binary: the model's output 1, the class the threshold is about (model.json)
        self.positive_class: str | None = (
            (info.get("positive_class") or self.classes[1]) if self.task == "binary" else None
        )

    @classmethod
    def from_run(
        cls, run_dir: str | Path, device: str | None = None, runtime: str = "torch"
    ) -> Predictor:
        """The run's model; a cross-validated run (``train --folds``) gives its ensemble.
        ``runtime="onnx"``: scored by the run's checked ONNX export (``scandx export``)."""
        from scandx.core.device import detect_device, runtime_device
        from scandx.export.onnx_runtime import check_runtime, onnx_networks

        check_runtime(runtime)
        device = runtime_device(device or detect_device()[0], "fp32")[0]
        model_dir = Path(run_dir) / "model"
        info = read_model_json(model_dir)
        networks = onnx_networks(run_dir, device) if runtime == "onnx" else None
        if "ensemble" in info:
            from scandx.tasks.classification.inference.ensemble import EnsemblePredictor

            return EnsemblePredictor.from_members(model_dir, info, device, networks)
        model, info = load_model(model_dir)
        network = networks[model_dir.resolve()] if networks else None
        return cls(model, info, device, network)

    def prepare_file(self, path: str | Path) -> torch.Tensor:
        arr, _ = read_image(path)
        return preprocess(arr, self.contract, str(path))

    def prepare_case(self, case: Case) -> torch.Tensor:
        return preprocess(read_case(case), self.contract, case.path)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Raw (uncalibrated) fp32 logits for a preprocessed batch (N, C, *size)."""
        return predict_logits(self.network, x, self.device)

    def to_probabilities(self, logits: torch.Tensor, calibrated: bool = True) -> np.ndarray:
        """Probabilities from logits, through the calibration in model.json by default."""
        if calibrated:
            logits = apply_calibration(logits, self.info.get("calibration"))
        return probabilities(self.task, logits).numpy()

    def probabilities(self, x: torch.Tensor) -> np.ndarray:
        """Calibrated class (or label) probabilities for a preprocessed batch."""
        return self.to_probabilities(self.logits(x))

    def logits_and_features(self, x: torch.Tensor) -> tuple[torch.Tensor, np.ndarray | None]:
        """Raw logits and, when the model has an OOD score, what it is computed from (the
        penultimate features and the input statistics), in one pass."""
        tensors = self.info.get("ood_tensors")
        if tensors is None:
            return self.logits(x), None
        with capturing_penultimate(self.network) as captured:
            logits = self.logits(x)
        return logits, ood_features(as_features(captured), x, tensors)

    def ood_scores(
        self, x: torch.Tensor | None = None, features: np.ndarray | None = None
    ) -> np.ndarray | None:
        """OOD score per image (higher = less like the training data; flagged above
        model.json ``ood.threshold``), from a batch or from what ``logits_and_features``
        captured."""
        tensors = self.info.get("ood_tensors")
        if tensors is None:
            return None
        if features is None:
            features = ood_features(
                penultimate_features(self.network, x.to(self.device)), x, tensors
            )
        return ood_score(features, tensors)

    def uncertainty(
        self, x: torch.Tensor, n: int = 8, probs: np.ndarray | None = None
    ) -> np.ndarray:
        """Spread (std) of the decision probability over seeded test-time augmentations
        (``probs``: the batch's own probabilities, when already computed)."""
        tta = tta_probabilities(
            self.probabilities, x, self.contract.mean, self.contract.std, n, first=probs
        )
        if self.task == "binary":
            return tta[:, :, 1].std(0)
        if self.task == "multiclass":
            top = tta[0].argmax(1)
            return tta[:, np.arange(len(top)), top].std(0)
        return tta.std(0).mean(1)

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """Decisions at the saved operating thresholds (chosen on validation data)."""
        th = self.info["thresholds"]
        if self.task == "binary":
            return (probs[:, 1] >= th["positive"]).astype(int)
        if self.task == "multilabel":
            t = np.array([th[c] for c in self.classes])
            return (probs >= t[None]).astype(int)
        return probs.argmax(1)

    def prepare(self, path: str | Path) -> torch.Tensor:
        return self.prepare_file(path)

    def columns(self) -> list[str]:
        """Binary: each class's probability, the positive class, the threshold on its
        probability and the decision at it (``predicted``, kept for older readers, is the
        same label). Multi-class: ``predicted`` is the most probable class; multi-label:
        the labels at or above their own thresholds (model.json), joined by ';'."""
        probs = [f"prob_{c}" for c in self.classes]
        decision = ["positive_class", "threshold", "decision"] if self.task == "binary" else []
        return [*probs, *decision, "predicted", "uncertainty", "ood_score", "ood_flag"]

    def score(self, prepared: list[torch.Tensor]) -> list[dict[str, Any]]:
        """Probabilities, decision, TTA spread and OOD score per prepared image.

        One image at a time: a float32 convolution gives results that differ in the last
        bits with the batch size, so scoring images together would make an image's
        outputs (its OOD score, its TTA spread) depend on the other files of the call."""
        threshold = (self.info.get("ood") or {}).get("threshold")
        out = []
        for x in prepared:
            logits, features = self.logits_and_features(x[None])
            probs = self.to_probabilities(logits)
            spread = self.uncertainty(x[None], probs=probs)
            scores = self.ood_scores(features=features)
            row = {**self._row(probs[0], self.decide(probs)[0]), "uncertainty": float(spread[0])}
            if scores is not None:
                row["ood_score"] = float(scores[0])
                row["ood_flag"] = bool(scores[0] > threshold)
            out.append(row)
        return out

    def write(self, path: str | Path, output: dict[str, Any], out_dir: Path | None) -> dict:
        """A classifier's prediction is its row of predictions.csv (no file per input)."""
        return output

    def _row(self, probs: np.ndarray, decision: Any) -> dict[str, Any]:
        row: dict[str, Any] = {
            f"prob_{c}": float(p) for c, p in zip(self.classes, probs, strict=True)
        }
        if self.task == "multilabel":
            row["predicted"] = ";".join(c for c, d in zip(self.classes, decision, strict=True) if d)
        else:
            row["predicted"] = self.classes[int(decision)]
        if self.task == "binary":
            row["positive_class"] = self.positive_class
            row["threshold"] = float(self.info["thresholds"]["positive"])
            row["decision"] = row["predicted"]
        return row
