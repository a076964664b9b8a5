"""Heatmaps from MONAI's Grad-CAM, Grad-CAM++ and occlusion sensitivity.

Target layers are chosen automatically for every registered model: the model's
block outputs (ResNet layers, DenseNet transitions, EfficientNet blocks, the plain
CNNs' pooling stages) whose maps are at least 4x4 (else 2x2). Grad-CAM is computed at each and
the normalised maps are averaged (multi-layer fusion in the spirit of LayerCAM):
the deepest layer alone (e.g. ResNet ``layer4``, 4x4 at 64 px) is too coarse to
point at a small lesion, a shallow one alone is less class-specific. Measured on
synthetic phantoms in docs/benchmarks.md.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn as nn

METHODS = ("gradcam", "gradcam++", "layercam", "occlusion")


def _layercam_class():
    from monai.visualize import GradCAM

    class LayerCAM(GradCAM):
        """LayerCAM (Jiang et al., IEEE TIP 2021) on MONAI's hooks: each activation weighted
        by its own positive gradient, instead of Grad-CAM's one mean gradient per channel.
        Faithful for heads that do not average-pool (the plain CNNs' dense layers)."""

        def compute_map(self, x, class_idx=None, retain_graph=False, layer_idx=-1, **kwargs):
            _, acti, grad = self.nn_module(
                x, class_idx=class_idx, retain_graph=retain_graph, **kwargs
            )
            acti, grad = acti[layer_idx], grad[layer_idx]
            return torch.relu((torch.relu(grad) * acti).sum(1, keepdim=True))

    return LayerCAM


def networks(model: nn.Module) -> list[nn.Module]:
    """The networks a heatmap is computed on: the seeds' networks of a ``SeedEnsemble``
    (kept when leftover budget trained a second seed; its layer names are prefixed
    ``members.<i>.``, so one member's target layers are not another's), else the model.
    Each network's map is computed at its own target layers and the maps averaged."""
    from scandx.models.registry import SeedEnsemble

    if isinstance(model, SeedEnsemble):
        return [net for member in model.members for net in networks(member)]
    return [model]


@contextmanager
def _hooks_removed_after(model: nn.Module) -> Iterator[None]:
    """Remove the hooks registered on ``model`` inside (MONAI's CAM registers a forward and
    a backward hook per target layer and never removes them: every explained image would
    leave two more on the model, each holding its last activations and gradients)."""
    before = {m: (set(m._forward_hooks), set(m._backward_hooks)) for m in model.modules()}
    try:
        yield
    finally:
        for m, (fwd, bwd) in before.items():
            for key in set(m._forward_hooks) - fwd:
                del m._forward_hooks[key]
            for key in set(m._backward_hooks) - bwd:
                del m._backward_hooks[key]


def candidate_layers(model: nn.Module) -> list[str]:
    """Names of block outputs in depth order (falls back to every conv layer)."""
    names = [n for n, _ in model.named_modules()]
    if all(f"layer{i}" in names for i in range(1, 5)):  # ResNet
        return [f"layer{i}" for i in range(1, 5)]
    if "features.denseblock1" in names:  # DenseNet (norm5 feeds an in-place ReLU: not hookable)
        transitions = [
            n for n in names if n.count(".") == 1 and n.startswith("features.transition")
        ]
        return [*transitions, "features.denseblock4"]
    if "_blocks" in names:  # EfficientNet
        return [n for n in names if n.count(".") == 1 and n.startswith("_blocks.")] + ["_conv_head"]
    pools = [n for n, m in model.named_modules() if isinstance(m, (nn.MaxPool2d, nn.MaxPool3d))]
    if pools:  # the plain CNNs
        return pools
    return [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))]


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _layer_sides(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """Shortest spatial side of each candidate layer's output, from one dry forward pass."""
    sides: dict[str, int] = {}
    modules = dict(model.named_modules())
    hooks = [
        modules[n].register_forward_hook(
            lambda _m, _i, out, n=n: sides.__setitem__(n, min(out.shape[2:]))
        )
        for n in candidate_layers(model)
    ]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_shape))
    finally:
        for h in hooks:
            h.remove()
    return sides


MIN_MAP_SIDE = 4


def default_method(model: nn.Module) -> str:
    """The heatmap method ``auto`` resolves to: LayerCAM for networks with a dense head on
    flattened maps (the plain CNNs), where Grad-CAM's one mean gradient per channel
    ignores position (pointing game on phantoms: Grad-CAM 16.7%, LayerCAM 76.2%), and
    Grad-CAM for the networks that average-pool before the classifier."""
    from scandx.models.cnn import PlainCNN

    return "layercam" if isinstance(model, PlainCNN) else "gradcam"


def target_layers(model: nn.Module, input_shape: tuple[int, ...]) -> list[str]:
    """Every block output whose map is at least 4 px on its shortest side, shallow to deep
    (fused by explain). A 2x2 map (ResNet ``layer4`` at 64 px) can only name a quadrant;
    fusing it pulled the maximum off small lesions (benchmarks: pointing game)."""
    sides = _layer_sides(model, input_shape)
    for min_side in (MIN_MAP_SIDE, 2):
        layers = [n for n in candidate_layers(model) if sides.get(n, 0) >= min_side]
        if layers:
            return layers
    return candidate_layers(model)[:1]


def explain_tensor(
    model: nn.Module,
    x: torch.Tensor,
    class_idx: int,
    method: str = "gradcam",
    layers: list[str] | None = None,
) -> np.ndarray:
    """Heatmap in [0, 1] over the model input's spatial grid for one image x (1, C, *S).

    Grad-CAM(++) maps of ``layers`` (default: ``target_layers``) are each scaled to
    [0, 1] and averaged: deep layers say which class, shallow ones say where.
    """
    from monai.visualize import GradCAM, GradCAMpp, OcclusionSensitivity

    model.eval()
    if method in ("gradcam", "gradcam++", "layercam"):
        layers = layers or target_layers(model, tuple(x.shape[1:]))
        missing = sorted(set(layers) - {n for n, _ in model.named_modules()})
        if missing:  # MONAI would only warn, then fail on a missing activation
            raise ValueError(f"{type(model).__name__} has no layer {', '.join(missing)}")
        cam_cls = {"gradcam": GradCAM, "gradcam++": GradCAMpp}.get(method) or _layercam_class()
        maps = []
        for layer in layers:
            # MONAI's default post-processing maps (min, max) to (1, 0), flipping the
            # map (monai.visualize.class_activation_maps.default_normalizer); keep it raw.
            with _hooks_removed_after(model), torch.enable_grad():
                cam = cam_cls(nn_module=model, target_layers=layer, postprocessing=_identity)
                heat = cam(x.clone().requires_grad_(True), class_idx=class_idx)
            maps.append(_unit(heat[0, 0].detach().float().numpy()))
        out = np.mean(maps, axis=0)
    elif method == "occlusion":
        side = min(x.shape[2:])
        volume = x.dim() == 5  # 3D: coarser patches, or a volume takes ~10^4 forward passes
        occ = OcclusionSensitivity(
            nn_module=model,
            mask_size=max(2, side // (4 if volume else 8)),
            n_batch=32,
            verbose=False,
            overlap=0.5,
        )
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # MONAI 1.6 indexing deprecation
            occ_map, _ = occ(x)
        score = occ_map[0, class_idx].float().numpy()  # class probability with each patch hidden
        out = score.max() - score  # importance: how much hiding the patch lowers the score
    else:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    return _unit(out)


def _unit(a: np.ndarray) -> np.ndarray:
    lo, hi = float(a.min()), float(a.max())
    return ((a - lo) / (hi - lo)).astype(np.float32) if hi > lo else np.zeros_like(a, np.float32)
