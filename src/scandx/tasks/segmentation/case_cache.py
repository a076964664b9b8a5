"""Segmentation cases through the preprocessed cache (``data/cache.py``).

``prepared_case`` gives a training or validation case as the plan prepares it (read,
normalised, resampled to the target spacing), plus the locations of its foreground
voxels and its region-of-interest box, so sampling a patch never scans a whole label.
The arrays are memory-mapped from the cache: a training split larger than the machine's
memory is read one touched page at a time. The key is the content of every file of the
case and ``prep_hash`` (the plan's normalisation scheme and statistics, target spacing,
channels, FOV use, the declared labels, and the readers' versions).

``decoded_case`` caches what the fingerprint decodes (the case as read), so ``train``
decodes each volume once: the fingerprint fills it, ``prepared_case`` starts from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from scandx.data.cache import PreprocessedCache, decoder_versions, file_digest, stable_hash
from scandx.tasks.segmentation.infer import normalize, roi_box
from scandx.tasks.segmentation.plan import SegPlan
from scandx.tasks.segmentation.sources import SegCase
from scandx.tasks.segmentation.volumes import Loaded, read_case_arrays, resample

SEG_PREP_VERSION = 1  # bump when the preparation below changes for the same plan
FOREGROUND_SAMPLES = 10_000  # per class, as nnU-Net's class_locations
FOREGROUND_COVERAGE = 0.01  # ... and at least this share of the class's voxels
PARTS = ("image", "label", "fov", "foreground", "box")


@dataclass
class Prepared:
    image: np.ndarray  # (C, *S) float32, normalised
    label: np.ndarray  # (*S) integer label map (uint8 when the labels fit)
    fov: np.ndarray | None  # (*S) bool
    foreground: np.ndarray  # flat indices of foreground voxels (a per-class sample)
    box: tuple[slice, ...]  # region of interest (the whole grid without a FOV)


def case_key(case: SegCase) -> str:
    """The case by content: every image channel, the label and the FOV mask."""
    files = [file_digest(f) for f in case.images]
    return stable_hash(
        files,
        file_digest(case.label) if case.label else "",
        file_digest(case.fov) if case.fov else "",
    )


def prep_hash(plan: SegPlan, labels: dict[int, str] | None) -> str:
    """Exactly what changes a prepared case besides its files."""
    return stable_hash(
        {
            "normalization": plan.normalization,
            "ct_clip": plan.ct_clip,
            "ct_mean": plan.ct_mean,
            "ct_std": plan.ct_std,
            "use_fov": plan.use_fov,
            "target_spacing": plan.target_spacing,
            "in_channels": plan.in_channels,
            "labels": sorted((labels or {}).keys()),
        },
        SEG_PREP_VERSION,
        decoder_versions(),
    )


def foreground_index(label: np.ndarray, seed: int = 1234) -> np.ndarray:
    """Flat indices (ascending) of the foreground voxels: all of a class with few, a seeded
    sample of ``FOREGROUND_SAMPLES`` (at least ``FOREGROUND_COVERAGE`` of them) of a class
    with many, so a rare class is found as often as a large one is."""
    flat = label.reshape(-1)
    fg = np.flatnonzero(flat > 0)
    classes = np.unique(flat[fg])
    rng = np.random.default_rng(seed)
    kept = []
    for k in classes:
        idx = fg[flat[fg] == k]
        n = max(FOREGROUND_SAMPLES, math.ceil(FOREGROUND_COVERAGE * idx.size))
        kept.append(idx if idx.size <= n else rng.choice(idx, n, replace=False))
    return np.sort(np.concatenate(kept)) if kept else np.zeros(0, np.int64)


def _small_labels(label: np.ndarray) -> np.ndarray:
    top = int(label.max()) if label.size else 0
    return label.astype(np.uint8 if top < 256 else np.int16 if top < 32768 else np.int64)


def prepare(loaded: Loaded, plan: SegPlan) -> Prepared:
    """The plan's normalisation and resampling of one case as read."""
    img, lab, fov = normalize(loaded.image, plan, loaded.fov), loaded.label, loaded.fov
    if lab is None:  # an unlabelled case, read for pretraining only: an empty label map
        lab = np.zeros(img.shape[1:], np.uint8)
    target = plan.target_spacing
    if target and tuple(loaded.spacing) != tuple(target):
        img = resample(img, loaded.spacing, target, label=False)
        lab = resample(lab, loaded.spacing, target, label=True)
        fov = None if fov is None else resample(fov, loaded.spacing, target, True)
    box = roi_box(fov if plan.use_fov else None, lab.shape)
    return Prepared(img, lab, fov, foreground_index(lab), box)


def _to_arrays(p: Prepared) -> dict[str, np.ndarray]:
    box = np.array([[b.start, b.stop] for b in p.box], np.int64)
    fov = p.fov if p.fov is not None else np.zeros(0, bool)  # empty: no FOV
    return {
        "image": np.ascontiguousarray(p.image, np.float32),
        "label": _small_labels(p.label),
        "fov": fov,
        "foreground": p.foreground.astype(np.int64),
        "box": box,
    }


def _from_arrays(a: dict[str, np.ndarray]) -> Prepared | None:
    image, label, fov, box = a["image"], a["label"], a["fov"], a["box"]
    ok = (
        image.ndim == label.ndim + 1
        and image.shape[1:] == label.shape
        and box.shape == (label.ndim, 2)
        and (fov.size == 0 or fov.shape == label.shape)
    )
    if not ok:
        return None
    spans = tuple(slice(int(lo), int(hi)) for lo, hi in box)
    return Prepared(image, label, fov if fov.size else None, a["foreground"], spans)


def decoded_case(
    case: SegCase, labels: dict[int, str] | None, cache: PreprocessedCache | None
) -> Loaded:
    """``read_case_arrays(case, labels)``, from the cache when this content was read before
    (the fingerprint's pass); the checks ran when it was first read."""
    if cache is None:
        return read_case_arrays(case, labels)
    key = stable_hash("seg-read", case_key(case), sorted((labels or {}).keys()), decoder_versions())

    def build() -> dict[str, np.ndarray]:
        r = read_case_arrays(case, labels)
        return {
            "image": r.image,
            "label": r.label if r.label is not None else np.zeros(0, np.int64),
            "fov": r.fov if r.fov is not None else np.zeros(0, bool),
            "spacing": np.array(r.spacing, np.float64),
            "affine": r.affine if r.affine is not None else np.zeros(0),
        }

    a, _ = cache.fetch("seg-read", key, ("image", "label", "fov", "spacing", "affine"), build)
    none = lambda x: None if x.size == 0 else x  # noqa: E731
    spacing = tuple(float(v) for v in a["spacing"])
    return Loaded(a["image"], none(a["label"]), none(a["fov"]), spacing, none(a["affine"]))


def prepared_case(
    case: SegCase, labels: dict[int, str] | None, plan: SegPlan, cache: PreprocessedCache | None
) -> Prepared:
    """The case prepared as the plan says: memory-mapped from the cache when it is there,
    else read (or taken from the fingerprint's cached read), prepared and cached."""
    if cache is None:
        return prepare(read_case_arrays(case, labels), plan)
    key = stable_hash("seg-prepared", case_key(case), prep_hash(plan, labels))
    build = lambda: _to_arrays(prepare(decoded_case(case, labels, cache), plan))  # noqa: E731
    arrays, _ = cache.fetch("seg-prepared", key, PARTS, build)
    out = _from_arrays(arrays)
    if out is None:  # an entry that cannot be this case's: rebuild it
        arrays = build()
        cache.put("seg-prepared", key, arrays)
        out = _from_arrays(arrays)
    assert out is not None
    return out
