"""Normalisation and sliding-window inference shared by training, evaluate and predict."""

from __future__ import annotations

import numpy as np
import torch

from scandx.tasks.segmentation.plan import SegPlan


def normalize(image: np.ndarray, plan: SegPlan, fov: np.ndarray | None = None) -> np.ndarray:
    """The plan's intensity normalisation of one case (C, *S); outside the FOV -> 0."""
    img = image.astype(np.float32).copy()
    if plan.normalization == "ct":
        lo, hi = plan.ct_clip or (float(img.min()), float(img.max()))
        img = (np.clip(img, lo, hi) - plan.ct_mean) / plan.ct_std
    else:
        inside = fov if (plan.use_fov and fov is not None) else np.ones(img.shape[1:], bool)
        for c in range(img.shape[0]):
            v = img[c][inside]
            img[c] = (img[c] - v.mean()) / (v.std() + 1e-8)
    if plan.use_fov and fov is not None:
        img[:, ~fov] = 0.0
    return img


def roi_box(fov: np.ndarray | None, shape: tuple[int, ...], margin: int = 4) -> tuple[slice, ...]:
    """Bounding box (with a margin) of the region of interest; the whole image without one."""
    if fov is None or not fov.any():
        return tuple(slice(0, s) for s in shape)
    idx = np.nonzero(fov)
    return tuple(
        slice(max(0, int(i.min()) - margin), min(s, int(i.max()) + 1 + margin))
        for i, s in zip(idx, shape, strict=True)
    )


class _SliceWise(torch.nn.Module):
    """A 2D network applied to windows one slice thick along ``axis`` of a volume."""

    def __init__(self, model: torch.nn.Module, axis: int) -> None:
        super().__init__()
        self.model, self.axis = model, axis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.squeeze(self.axis)).unsqueeze(self.axis)


@torch.no_grad()
def predict_probabilities(
    model: torch.nn.Module,
    image: np.ndarray,
    plan: SegPlan,
    tta: bool | None = None,
    fov: np.ndarray | None = None,
) -> np.ndarray:
    """Softmax probabilities (K, *S) of a normalised case by Gaussian-weighted sliding
    windows (half-patch overlap); with ``tta`` also averaged over flips of every axis.
    With a region-of-interest mask only its bounding box is run (background elsewhere),
    as nnU-Net crops to the non-zero region."""
    box = roi_box(fov if plan.use_fov else None, image.shape[1:])
    inner = _predict(model, np.ascontiguousarray(image[(slice(None), *box)]), plan, tta)
    if inner.shape[1:] == image.shape[1:]:
        return inner
    out = np.zeros((inner.shape[0], *image.shape[1:]), np.float32)
    out[0] = 1.0
    out[(slice(None), *box)] = inner
    return out


def _predict(model: torch.nn.Module, image: np.ndarray, plan: SegPlan, tta: bool | None):
    from monai.inferers import sliding_window_inference

    model.eval()
    # the Predictor's (or training's) device; an ONNX Runtime network has no parameters
    # and takes CPU tensors
    device = next(model.parameters(), torch.empty(0)).device
    x = torch.from_numpy(image)[None].to(device)
    tta = plan.tta_flips if tta is None else tta
    flips: list[tuple[int, ...]] = [()]
    if tta:
        axes = [2 + a for a in range(plan.data_dims) if a != plan.slice_axis]
        flips += [(a,) for a in axes]
    predictor = model if plan.slice_axis is None else _SliceWise(model, plan.slice_axis + 2)

    def run(inp: torch.Tensor) -> torch.Tensor:
        return sliding_window_inference(
            inp,
            roi_size=plan.window,
            sw_batch_size=plan.batch_size,
            predictor=predictor,
            overlap=0.5,
            mode="gaussian",
            padding_mode="constant",
        )

    total = None
    for axes in flips:
        inp = torch.flip(x, axes) if axes else x
        logits = run(inp).float()
        probs = torch.softmax(logits, 1)
        probs = torch.flip(probs, axes) if axes else probs
        total = probs if total is None else total + probs
    return (total / len(flips))[0].cpu().numpy()


def predict_case(model: torch.nn.Module, loaded, plan: SegPlan) -> np.ndarray:
    """Probabilities (K, *S) for a case as read (``volumes.Loaded``), in its own grid:
    normalised, resampled to the plan's spacing when it has one, and back; background
    outside the field of view when the plan uses one. Evaluate and predict both come
    here, so that one image gives one mask whichever command reads it."""
    import torch.nn.functional as F

    from scandx.tasks.segmentation.volumes import resample

    image, fov = normalize(loaded.image, plan, loaded.fov), loaded.fov
    target = plan.target_spacing
    if target and loaded.spacing and tuple(loaded.spacing) != tuple(target):
        image = resample(image, loaded.spacing, target, label=False)
        fov = None if fov is None else resample(fov, loaded.spacing, target, label=True)
    probs = predict_probabilities(model, image, plan, fov=fov)
    if probs.shape[1:] != loaded.image.shape[1:]:
        mode = "bilinear" if probs.ndim == 3 else "trilinear"
        t = torch.from_numpy(probs)[None]
        probs = F.interpolate(t, size=list(loaded.image.shape[1:]), mode=mode, align_corners=False)[
            0
        ].numpy()
    if plan.use_fov and loaded.fov is not None:  # nothing is predicted outside the FOV
        probs[:, ~loaded.fov] = 0.0
        probs[0, ~loaded.fov] = 1.0
    return probs
