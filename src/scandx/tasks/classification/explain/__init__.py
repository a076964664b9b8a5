"""Explanations: Grad-CAM family and occlusion (MONAI), target layers, overlays."""

from scandx.tasks.classification.explain.cam import METHODS, explain_tensor, target_layers

__all__ = ["METHODS", "explain_tensor", "target_layers"]
