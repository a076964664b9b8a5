"""Inference: the model directory and the Predictor every consumer uses."""

from scandx.tasks.classification.inference.predictor import Predictor

__all__ = ["Predictor"]
