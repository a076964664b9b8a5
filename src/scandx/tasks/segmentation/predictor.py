"""The segmentation Predictor (``core/predictor.py`` protocol): a trained run -> label
maps. ``prepare`` reads an image file or a DICOM series folder and checks it against
the model; ``score`` gives each input's probabilities and label map (sliding windows,
the plan's test-time flips, the threshold and component rules chosen on validation);
``write`` saves the mask in the input's own format (NIfTI with the image's affine for
NIfTI and DICOM series, plus a DICOM SEG referencing the series; PNG for 2D rasters).
A ``train --folds`` run gives the ensemble of its fold models (mean softmax), each
member checked against the sha256 the ensemble recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from scandx.core.device import detect_device, runtime_device
from scandx.core.predictor import (
    Predictor,
    checked_weights,
    ensemble_members,
    read_model_json,
    require,
)
from scandx.core.privacy import file_ref
from scandx.core.weights import load_weights
from scandx.errors import ScandxError
from scandx.models import create_model
from scandx.tasks.segmentation.infer import predict_case
from scandx.tasks.segmentation.plan import SegPlan
from scandx.tasks.segmentation.postprocess import label_map
from scandx.tasks.segmentation.sources import SegCase
from scandx.tasks.segmentation.volumes import Loaded, read_case_arrays


def build_seg_model(plan: SegPlan) -> torch.nn.Module:
    return create_model(
        plan.model,
        plan.spatial_dims,
        plan.in_channels,
        plan.n_classes,
        input_size=plan.patch_size,
        **plan.model_kwargs,
    )


def _load_member(model_dir: Path, plan: SegPlan) -> torch.nn.Module:
    info = read_model_json(model_dir)
    model = build_seg_model(plan)
    load_weights(model, checked_weights(model_dir, info))
    return model.eval()


def check_seg_model_json(info: dict[str, Any], where: Path) -> None:
    """Segmentation's own model.json keys (the shared ones are checked by
    ``read_model_json``): the component rule per label and the binary threshold."""
    post = require(info, where, "postprocessing", dict)
    for label, rule in post.items():
        if not (str(label).isdigit() and isinstance(rule, dict)):
            raise ScandxError(f"postprocessing[{label!r}]: expected a label and a rule", where)
        keep = rule.get("keep_largest_component", False)
        if not isinstance(keep, bool):
            raise ScandxError(
                f"postprocessing[{label!r}].keep_largest_component: expected true/false", where
            )
    threshold = info.get("threshold")
    if threshold is not None:
        value = require(info, where, "threshold.value", float)
        if not 0.0 <= value <= 1.0:
            raise ScandxError(f"threshold.value {value} is not a probability in [0, 1]", where)


def load_seg_run(run: Path) -> tuple[torch.nn.Module, SegPlan, dict[str, Any]]:
    """(model, plan, model.json) of a run, on the CPU; a ``train --folds`` run gives the
    ensemble of its fold models."""
    info = read_model_json(run / "model")
    check_seg_model_json(info, run / "model" / "model.json")
    plan = SegPlan.load(run / "plan.json")
    if "ensemble" in info:
        members = [_load_member(m, plan) for m in ensemble_members(run / "model", info)]
        return SegEnsemble(members).eval(), plan, info
    return _load_member(run / "model", plan), plan, info


class SegEnsemble(torch.nn.Module):
    """Members' mean softmax probabilities, returned as log-probabilities so that the
    softmax applied by inference gives back that mean."""

    def __init__(self, members: list[torch.nn.Module]) -> None:
        super().__init__()
        self.members = torch.nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.stack([torch.softmax(m(x).float(), 1) for m in self.members]).mean(0)
        return torch.log(mean.clamp_min(1e-12))


class SegPredictor(Predictor):
    batch_size = 1  # whole images: one at a time

    def __init__(self, run: Path, device: str | None = None, runtime: str = "torch") -> None:
        """``runtime="onnx"``: the network(s) run by ONNX Runtime from the run's checked
        export (``scandx export``); everything around them is this class's, unchanged."""
        from scandx.export.onnx_runtime import check_runtime, onnx_networks

        self.runtime = check_runtime(runtime)
        model, self.plan, self.info = load_seg_run(Path(run))
        self.task = "segmentation"
        self.device = runtime_device(device or detect_device()[0], "fp32")[0]
        if runtime == "onnx":
            networks = list(onnx_networks(run, self.device).values())  # in member order
            model = SegEnsemble(networks) if "ensemble" in self.info else networks[0]
        self.model = model.to(self.device).eval()
        self.labels = {int(k): v for k, v in self.plan.labels.items()}

    fov_masks: dict[str, str] | None = None  # input path -> its field-of-view mask

    def set_fov_masks(self, files: list[str], masks: list[str] | None) -> None:
        """Pair each input with its field-of-view mask (``predict --fov``, in the order of
        the inputs). A model trained with FOV masks normalises inside the FOV and predicts
        nothing outside it, as in training and evaluation: it needs one per input."""
        masks = list(masks or [])
        if masks and not self.plan.use_fov:
            raise ScandxError(
                "--fov given, but this model was trained without field-of-view masks "
                "(plan.json use_fov is false)"
            )
        if self.plan.use_fov and len(masks) != len(files):
            raise ScandxError(
                f"this model was trained with field-of-view masks (plan.json use_fov): give "
                f"one --fov MASK per input, in the same order ({len(files)} input(s), "
                f"{len(masks)} mask(s))"
            )
        self.fov_masks = {str(f): str(m) for f, m in zip(files, masks, strict=bool(masks))}

    def prepare(self, path: str | Path) -> tuple[SegCase, Loaded]:
        """The input read as evaluation reads a case: its FOV mask, when the model was
        trained with them, gives the same normalisation and background outside it."""
        fov = (self.fov_masks or {}).get(str(path))
        if self.plan.use_fov and fov is None:
            raise ScandxError(
                "this model was trained with field-of-view masks: give this input's mask "
                "with --fov MASK",
                path,
            )
        case = SegCase(file_ref(path), [str(path)], None, fov=fov)  # the mask is named by it
        r = read_case_arrays(case)
        plan = self.plan
        if r.image.shape[0] != plan.in_channels or r.image.ndim - 1 != plan.data_dims:
            raise ScandxError(
                f"image has {r.image.shape[0]} channel(s) and {r.image.ndim - 1} dimensions; "
                f"the model expects {plan.in_channels} and {plan.data_dims}",
                path,
            )
        return case, r

    def probabilities(self, loaded: Loaded) -> np.ndarray:
        """Softmax probabilities (K, *S) in the case's own grid."""
        return predict_case(self.model, loaded, self.plan)

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """The label map: the validation-chosen threshold and component rules."""
        return label_map(probs, self.info["postprocessing"], self.info.get("threshold"))

    def score(self, prepared: list[tuple[SegCase, Loaded]]) -> list[dict[str, Any]]:
        out = []
        for case, loaded in prepared:
            probs = self.probabilities(loaded)
            out.append({"case": case, "loaded": loaded, "probs": probs, "mask": self.decide(probs)})
        return out

    def columns(self) -> list[str]:
        fov = ["fov"] if self.plan.use_fov else []
        return ["mask", *fov, *[f"fraction_{v}" for k, v in self.labels.items() if k]]

    def write(self, path: str | Path, output: dict[str, Any], out_dir: Path | None) -> dict:
        if out_dir is None:
            raise ScandxError("segmentation writes a mask per input: give --out DIR")
        pred = output["mask"]
        mask = write_mask(out_dir, output["case"], pred, output["loaded"], self.labels)
        fractions = {
            f"fraction_{v}": float((pred == k).mean()) for k, v in self.labels.items() if k
        }
        fov = {"fov": output["case"].fov} if self.plan.use_fov else {}
        return {"mask": str(mask), **fov, **fractions}


def write_mask(
    folder: Path,
    case: SegCase,
    pred: np.ndarray,
    loaded: Loaded,
    labels: dict[int, str] | None = None,
) -> Path:
    """The predicted label map in the input's geometry: NIfTI with the image's affine for
    NIfTI and DICOM-series inputs (the latter also as a DICOM SEG referencing the
    series), else PNG (labels scaled to 0..255 for a binary task)."""
    name = case.case_id.replace("/", "_")
    if loaded.affine is not None:  # NIfTI or DICOM series: NIfTI with the same affine
        import nibabel as nib

        path = folder / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(pred.astype(np.uint8), loaded.affine), str(path))
        if Path(case.images[0]).is_dir():  # DICOM in, DICOM out: also a SEG on the series
            from scandx.tasks.segmentation.dicom_seg import write_dicom_seg

            write_dicom_seg(
                Path(case.images[0]), pred, labels or {1: "foreground"}, folder / f"{name}.seg.dcm"
            )
        return path
    from PIL import Image

    path = folder / f"{name}.png"
    scale = 255 if pred.max() <= 1 else 1
    Image.fromarray((pred * scale).astype(np.uint8)).save(path)
    return path
