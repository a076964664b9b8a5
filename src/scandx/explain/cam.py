"""Heatmaps from MONAI's Grad-CAM, Grad-CAM++ and occlusion sensitivity.

The target layer is chosen automatically for every registered model: among the
model's block outputs (ResNet layers, DenseNet transitions, EfficientNet blocks,
the plain CNNs' pooling stages) the deepest one whose feature map is at least
``min(7, input / 8)`` pixels on its shortest side. That is ResNet's ``layer4``
(7x7) at 224 px, as in the Grad-CAM paper, and a finer layer for small inputs,
where ``layer4`` would be 2x2 and could not point at a lesion.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn as nn

METHODS = ("gradcam", "gradcam++", "occlusion")


def candidate_layers(model: nn.Module) -> list[str]:
    """Names of block outputs in depth order (falls back to every conv layer)."""
    names = [n for n, _ in model.named_modules()]
    if all(f"layer{i}" in names for i in range(1, 5)):  # ResNet
        return [f"layer{i}" for i in range(1, 5)]
    if "features.denseblock1" in names:  # DenseNet
        return [n for n in names if n.count(".") == 1 and n.startswith("features.transition")] + [
            "features.norm5"
        ]
    if "_blocks" in names:  # EfficientNet
        return [n for n in names if n.count(".") == 1 and n.startswith("_blocks.")] + ["_conv_head"]
    pools = [n for n, m in model.named_modules() if isinstance(m, (nn.MaxPool2d, nn.MaxPool3d))]
    if pools:  # the plain CNNs
        return pools
    return [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))]


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def target_layer(model: nn.Module, input_shape: tuple[int, ...]) -> str:
    """The deepest candidate whose output is at least min(7, input/8) pixels wide."""
    sizes: dict[str, int] = {}
    hooks = []
    modules = dict(model.named_modules())
    for name in candidate_layers(model):
        hooks.append(
            modules[name].register_forward_hook(
                lambda _m, _i, out, name=name: sizes.__setitem__(name, min(out.shape[2:]))
            )
        )
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_shape))
    finally:
        for h in hooks:
            h.remove()
    need = max(2, min(7, min(input_shape[1:]) // 8))
    ok = [n for n in candidate_layers(model) if sizes.get(n, 0) >= need]
    return ok[-1] if ok else candidate_layers(model)[0]


def explain_tensor(
    model: nn.Module,
    x: torch.Tensor,
    class_idx: int,
    method: str = "gradcam",
    layer: str | None = None,
    postprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> np.ndarray:
    """Heatmap in [0, 1] over the model input's spatial grid for one image x (1, C, *S)."""
    from monai.visualize import GradCAM, GradCAMpp, OcclusionSensitivity

    model.eval()
    if method in ("gradcam", "gradcam++"):
        layer = layer or target_layer(model, tuple(x.shape[1:]))
        cam_cls = GradCAM if method == "gradcam" else GradCAMpp
        # MONAI's default post-processing maps (min, max) to (1, 0), flipping the map
        # (monai.visualize.class_activation_maps.default_normalizer); we keep the raw
        # map and normalise it below.
        cam = cam_cls(nn_module=model, target_layers=layer, postprocessing=_identity)
        with torch.enable_grad():
            heat = cam(x.clone().requires_grad_(True), class_idx=class_idx)
        out = heat[0, 0].detach().float().numpy()
    elif method == "occlusion":
        side = min(x.shape[2:])
        occ = OcclusionSensitivity(
            nn_module=model, mask_size=max(2, side // 8), n_batch=32, verbose=False, overlap=0.5
        )
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # MONAI 1.6 indexing deprecation
            occ_map, _ = occ(x)
        score = occ_map[0, class_idx].float().numpy()  # class probability with each patch hidden
        out = score.max() - score  # importance: how much hiding the patch lowers the score
    else:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    lo, hi = float(out.min()), float(out.max())
    return ((out - lo) / (hi - lo)).astype(np.float32) if hi > lo else np.zeros_like(out)
