"""A prediction as DICOM objects that go back to the source study: ``results_as_dicom``.

Every object joins the source study (same Study Instance UID, patient and study
attributes copied from the source) in a new series of its own, and references the
source images (SR: evidence + measurement groups; SEG: Referenced Series Sequence and
per-frame source images; SC: Source Image Sequence). Nothing is de-identified: these
objects go back to the PACS the images came from, and carry no identifier the source did
not carry (missing Type 2 study attributes are added empty). De-identification
(PS3.15) is for data leaving the hospital, not for results going back.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import numpy as np
from pydicom import Dataset

from scandx.dicom_out.model_info import ResultModel
from scandx.dicom_out.overlay_sc import mask_overlay, secondary_capture
from scandx.dicom_out.report_text import classification_text, segmentation_text
from scandx.dicom_out.sr import (
    classification_group,
    region_group,
    report_content,
    structured_report,
)
from scandx.errors import ScandxError

log = logging.getLogger(__name__)

TYPE2_STUDY = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)


def results_as_dicom(
    prediction: Any,
    source_datasets: list[Dataset],
    model: ResultModel,
    *,
    overlay: np.ndarray | None = None,
) -> list[Dataset]:
    """The result objects of one prediction, in the order SEG (segmentation, when a
    voxel was segmented), SR, SC (when there is an overlay).

    ``prediction``: what the task's Predictor ``score`` returned for this input (a
    classifier's row: ``prob_<class>``, ``predicted``, ``threshold``, ``uncertainty``,
    ``ood_score``, ``ood_flag``; a segmenter's dict with ``mask`` and ``loaded``).
    ``source_datasets``: the source instances (pixel data not needed): the one image a
    classifier scored, or every slice of the segmented series. ``model``:
    ``ResultModel.from_predictor(predictor, run)``. ``overlay``: uint8 RGB to store as
    the Secondary Capture (classification: ``overlay_sc.heatmap_overlay``; without it no
    SC); a segmentation's overlay is drawn here from its mask unless one is given."""
    sources = [with_type2_study(s) for s in source_datasets]
    if not sources:
        raise ScandxError("no source DICOM instances to attach the result to")
    studies = {str(s.get("StudyInstanceUID", "")) for s in sources}
    if len(studies) != 1 or "" in studies:
        raise ScandxError("the source instances must belong to one study (Study Instance UID)")
    if model.task == "segmentation":
        out = _segmentation(prediction, sources, model, overlay)
    else:
        out = _classification(prediction, sources[0], model, overlay)
    return out


def _classification(
    row: dict[str, Any], source: Dataset, model: ResultModel, overlay: np.ndarray | None
) -> list[Dataset]:
    text = classification_text(row, model)
    content = report_content([classification_group(row, model, source)], model, text)
    out: list[Dataset] = [structured_report(content, [source], f"scandx {model.name} report")]
    if overlay is not None:
        description = f"scandx {model.name} heatmap overlay (research use)"
        out.append(secondary_capture(overlay, source, [source], description))
    return out


def region_sizes(
    mask: np.ndarray, spacing: tuple[float, ...], labels: dict[int, str]
) -> tuple[dict[int, tuple[int, float]], str]:
    """({label: (voxels, size)}, unit): ml for a volume, mm2 for a 2D mask."""
    voxel = float(np.prod(spacing)) if spacing else 1.0
    unit, scale = ("ml", voxel / 1000.0) if mask.ndim == 3 else ("mm2", voxel)
    sizes = {}
    for k in sorted(labels):
        if k:
            n = int((mask == k).sum())
            sizes[k] = (n, n * scale)
    return sizes, unit


def _segmentation(
    output: dict[str, Any], sources: list[Dataset], model: ResultModel, overlay: np.ndarray | None
) -> list[Dataset]:
    from scandx.tasks.segmentation.dicom_seg import seg_dataset, sort_by_position

    mask = np.asarray(output["mask"])
    loaded = output["loaded"]
    ordered = sort_by_position(sources) if len(sources) > 1 else sources
    stack = mask if mask.ndim == 3 else mask[None]
    if stack.shape[0] != len(ordered):
        raise ScandxError(
            f"the mask has {stack.shape[0]} slice(s), the source series {len(ordered)} instance(s)"
        )
    sizes, unit = region_sizes(mask, loaded.spacing, model.labels)
    present = {k: model.labels[k] for k, (n, _) in sizes.items() if n}
    seg = seg_dataset(ordered, stack, present, algorithm=model.algorithm)
    numbers = {k: i for i, k in enumerate(sorted(present), start=1)}
    groups = [
        region_group(k, model.labels[k], size, unit, model, seg, numbers.get(k), ordered)
        for k, (_, size) in sizes.items()
    ]
    text = segmentation_text({model.labels[k]: v for k, v in sizes.items()}, unit, model)
    content = report_content(groups, model, text)
    evidence = [*ordered, *([seg] if seg is not None else [])]
    out: list[Dataset] = [] if seg is None else [seg]
    out.append(structured_report(content, evidence, f"scandx {model.name} report"))
    if overlay is None:
        overlay, shown = mask_overlay(loaded.image, mask)
    else:
        shown = list(range(len(ordered)))
    description = f"scandx {model.name} segmentation overlay (research use)"
    out.append(secondary_capture(overlay, ordered[0], [ordered[z] for z in shown], description))
    return out


def with_type2_study(source: Dataset) -> Dataset:
    """The source, or a copy with the Type 2 patient/study attributes it lacks added
    empty (highdicom copies them into every object; never a value the source did not
    carry)."""
    missing = [k for k in TYPE2_STUDY if k not in source]
    if not missing:
        return source
    source = copy.deepcopy(source)
    for keyword in missing:
        setattr(source, keyword, "")
    return source
