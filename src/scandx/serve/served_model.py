"""A trained run as the service holds it: its Predictor, loaded once at start-up, and
the one function that turns an accepted upload into the JSON answer.

The answer is built from the same Predictor ``scandx evaluate`` and ``scandx predict``
use (``core.predictor.load_predictor``): the same preprocessing, calibration,
operating point, uncertainty, out-of-distribution score, sliding window and
post-processing, so an image gets the same answer from the command line and the
service. A Predictor is not safe to call from two threads at once (the OOD score is
captured with a forward hook), so each model has a lock; the service runs several
models, or several ``--workers`` processes, side by side.
"""

from __future__ import annotations

import base64
import io
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scandx.core.predictor import Predictor, load_predictor
from scandx.dicom_out.overlay_sc import blend_mask, grey_255, heatmap_overlay
from scandx.errors import ScandxError
from scandx.serve.uploads import Upload

MAX_PREVIEW_SLICES = 48


@dataclass
class ServedModel:
    name: str
    run: Path
    predictor: Predictor
    runtime: str = "torch"
    lock: threading.Lock = field(default_factory=threading.Lock)
    similar_index: Any = None  # retrieval.search.SimilarIndex (scandx serve --index)

    @classmethod
    def load(cls, run: str | Path, name: str | None = None, runtime: str = "torch") -> ServedModel:
        run = Path(run)
        predictor = load_predictor(run, runtime=runtime)
        return cls(name or run.resolve().name, run, predictor, runtime)

    @property
    def task(self) -> str:
        return self.predictor.task

    @property
    def version(self) -> str:
        """When the model was trained (model.json ``created``): a retrained run is a new
        version; the weights' sha256 says exactly which weights answered."""
        return str(self.predictor.info.get("created", "unknown"))

    @property
    def weights_sha256(self) -> str:
        return str(self.predictor.info["sha256"])

    def describe(self) -> dict[str, Any]:
        info = self.predictor.info
        out: dict[str, Any] = {
            "name": self.name,
            "task": self.task,
            "version": self.version,
            "weights_sha256": self.weights_sha256,
            "runtime": self.runtime,
            "scandx_version": info.get("scandx_version"),
        }
        if self.task == "segmentation":
            out["labels"] = {str(k): v for k, v in self.predictor.labels.items()}  # type: ignore[attr-defined]
            out["dims"] = self.predictor.plan.data_dims  # type: ignore[attr-defined]
        else:
            out["classes"] = list(info["classes"])
            out["positive_class"] = getattr(self.predictor, "positive_class", None)
            out["has_ood_score"] = info.get("ood") is not None
        out["similar_cases"] = self.similar_index.count if self.similar_index else 0
        return out

    def header(self) -> dict[str, Any]:
        return {k: self.describe()[k] for k in ("name", "version", "weights_sha256", "runtime")}

    def predict(
        self,
        upload: Upload,
        *,
        heatmap: bool = False,
        preview: bool = False,
        mask_format: str | None = None,
        fov: Upload | None = None,
    ) -> list[dict]:
        """One result per image: a classifier scores each image of a series; a segmenter
        takes a series (or a NIfTI volume) as one volume, with its field-of-view mask
        (``fov``) when the model was trained with them."""
        with self.lock:
            if self.task == "segmentation":
                self._set_fov(upload, fov)
                return [self._segment(upload, preview, mask_format)]
            if fov is not None:
                raise ScandxError("a field-of-view mask ('fov') is for segmentation models")
            files = upload.images if upload.kind == "dicom-series" else [upload.path]
            return [self._classify(i, f, heatmap) for i, f in enumerate(files, start=1)]

    def _classify(self, index: int, path: Path, heatmap: bool) -> dict[str, Any]:
        p = self.predictor
        row = p.score([p.prepare(path)])[0]
        classes = list(p.info["classes"])
        out: dict[str, Any] = {
            "index": index,
            "probabilities": {c: row[f"prob_{c}"] for c in classes},
            "label": row["predicted"],
            "uncertainty": row.get("uncertainty"),
            "ood_score": row.get("ood_score"),
            "ood_flag": row.get("ood_flag"),
        }
        if p.task == "binary":
            out["positive_class"] = row["positive_class"]
            out["threshold"] = row["threshold"]
        if heatmap:
            out["heatmap"] = self._heatmap(path)
        return out

    def _heatmap(self, path: Path) -> dict[str, Any]:
        from scandx.data.readers import read_image
        from scandx.tasks.classification.explain.explain import explain_display

        display, _ = read_image(path)
        r = explain_display(self.predictor, display, "upload")  # type: ignore[arg-type]
        rgb = heatmap_overlay(display, r["heatmap"])
        return {
            "class": r["class"],
            "method": r["method"],
            "layer": r["layer"],
            "overlay_png": png_base64(rgb),
        }

    def _set_fov(self, upload: Upload, fov: Upload | None) -> None:
        p = self.predictor
        if fov is not None and not p.plan.use_fov:  # type: ignore[attr-defined]
            raise ScandxError(
                "this model was trained without field-of-view masks: send no 'fov' field"
            )
        if fov is None and p.plan.use_fov:  # type: ignore[attr-defined]
            raise ScandxError(
                "this model was trained with field-of-view masks: send the image's mask in "
                "the multipart field 'fov' beside 'file'"
            )
        if fov is not None and fov.kind not in ("png", "jpeg", "tiff", "nifti", "nifti-gz"):
            raise ScandxError("the 'fov' mask must be an image file (PNG, GIF, TIFF or NIfTI)")
        p.fov_masks = {str(upload.path): str(fov.path)} if fov else None  # type: ignore[attr-defined]

    def _segment(self, upload: Upload, preview: bool, mask_format: str | None) -> dict[str, Any]:
        import tempfile

        from scandx.tasks.segmentation.predictor import write_mask

        p = self.predictor
        case, loaded = p.prepare(upload.path)
        scored = p.score([(case, loaded)])[0]
        pred = scored["mask"]
        labels: dict[int, str] = p.labels  # type: ignore[attr-defined]
        voxel = float(np.prod(loaded.spacing)) if loaded.spacing else 1.0
        unit = "ml" if pred.ndim == 3 else "mm2"
        scale = voxel / 1000.0 if pred.ndim == 3 else voxel
        regions = {}
        for k, v in labels.items():
            if k:
                count = int((pred == k).sum())
                regions[v] = {"label": k, "voxels": count, unit: round(count * scale, 4)}
        with tempfile.TemporaryDirectory(prefix="scandx-mask-") as tmp:
            body = _mask_file(
                Path(tmp), write_mask(Path(tmp), case, pred, loaded, labels), mask_format
            )
        out: dict[str, Any] = {
            "index": 1,
            "shape": list(pred.shape),
            "spacing": [float(s) for s in loaded.spacing],
            "volume_unit": unit,
            "regions": regions,
            "mask": body,
        }
        if preview:
            out["preview"] = mask_previews(loaded.image, pred)
        return out


MASK_FORMATS = {"nifti": ".nii.gz", "png": ".png", "dicom-seg": ".seg.dcm"}
MEDIA = {"nifti": "application/gzip", "png": "image/png", "dicom-seg": "application/dicom"}


def _mask_file(folder: Path, written: Path, wanted: str | None) -> dict[str, Any]:
    """The mask file to answer with: ``wanted`` (nifti, png, dicom-seg) when it was
    written for this input, else the input's own format: DICOM SEG for a DICOM series
    (NIfTI when the mask is empty: a SEG must hold a segment), NIfTI for NIfTI, PNG
    for a 2D raster."""
    stem = written.name.removesuffix(".nii.gz").removesuffix(".png")
    files = {f: folder / (stem + ext) for f, ext in MASK_FORMATS.items()}
    present = [f for f, p in files.items() if p.is_file()]
    if wanted is not None and wanted not in present:
        raise ScandxError(
            f"mask_format {wanted!r} is not available for this input (available: "
            f"{', '.join(present)})"
        )
    fmt = wanted or ("dicom-seg" if "dicom-seg" in present else present[0])
    return {"format": fmt, "media_type": MEDIA[fmt], "data": _b64(files[fmt].read_bytes())}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def png_base64(rgb: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb), mode="RGB").save(buf, format="PNG")
    return _b64(buf.getvalue())


def mask_previews(image: np.ndarray, mask: np.ndarray) -> list[str]:
    """PNG (base64) of the image with the mask blended in (the colours of the Secondary
    Capture scandx sends to a PACS): one for a 2D image, one per slice (at most
    ``MAX_PREVIEW_SLICES``, evenly spaced) for a volume."""
    grey = grey_255(image)
    if grey.ndim == 2:
        grey, mask = grey[None], mask[None]
    picks = np.unique(np.linspace(0, grey.shape[0] - 1, MAX_PREVIEW_SLICES).round().astype(int))
    return [png_base64(blend_mask(grey[z], mask[z])) for z in picks]
