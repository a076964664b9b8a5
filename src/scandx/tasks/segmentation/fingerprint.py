"""Segmentation data fingerprint: every training case decoded once (shapes, spacings,
foreground share, foreground intensities), as nnU-Net fingerprints a data set."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from scandx.data.cache import default_cache
from scandx.data.labels import UNLABELLED
from scandx.errors import BadImageError, ScandxError
from scandx.tasks.segmentation.case_cache import decoded_case
from scandx.tasks.segmentation.sources import SegCase, SegManifest
from scandx.tasks.segmentation.volumes import Loaded

log = logging.getLogger(__name__)


def seg_fingerprint(manifest: SegManifest, skip_bad: bool = False) -> dict[str, Any]:
    """Decode every training case once: shapes, spacings, foreground share, intensities.

    A case that cannot be used (unreadable, mask and image disagreeing, undeclared label
    values) raises, or with ``skip_bad`` is dropped from the manifest and listed in
    ``manifest.skipped``. What is read goes to the preprocessed cache, so loading the
    cases for training reads none of them again (``case_cache.decoded_case``)."""
    cache = default_cache()
    shapes, spacings, fg, dims, channels = [], [], [], set(), set()
    samples: list[np.ndarray] = []
    rng = np.random.default_rng(0)
    for case in list(manifest.cases):
        if case.split in ("test", UNLABELLED):  # unlabelled: read by scandx pretrain only
            continue
        try:
            loaded = decoded_case(case, manifest.labels, cache)
            _check_channels(case, loaded, manifest)
        except ScandxError as e:
            if not skip_bad:
                raise
            manifest.cases.remove(case)
            manifest.skipped.append((case.case_id, e.reason))
            continue
        if loaded.label is None:
            continue
        if not (loaded.label > 0).any():
            log.warning("case %s has an empty mask", case.case_id)
        dims.add(loaded.image.ndim - 1)
        channels.add(loaded.image.shape[0])
        shapes.append(loaded.image.shape[1:])
        spacings.append(loaded.spacing)
        fg.append(float((loaded.label > 0).mean()))
        vox = loaded.image[0][loaded.label > 0]
        if vox.size:
            samples.append(rng.choice(vox, min(vox.size, 10_000), replace=False))
    if not shapes:
        raise ScandxError("no labelled training cases", manifest.source)
    if sum(fg) == 0:
        raise ScandxError("every mask is empty: nothing to learn", manifest.source)
    if len(dims) > 1:
        raise ScandxError("cases mix 2D and 3D images", manifest.source)
    if len(channels) > 1:
        raise ScandxError(
            f"cases have different channel counts {sorted(channels)}", manifest.source
        )
    fgv = np.concatenate(samples) if samples else np.zeros(1)
    return {
        "cases": len(shapes),
        "spatial_dims": dims.pop(),
        "channels": int(channels.pop()),
        "median_shape": [int(v) for v in np.median(np.array(shapes), axis=0)],
        "median_spacing": [float(v) for v in np.median(np.array(spacings), axis=0)],
        "spacing_p10": [float(v) for v in np.percentile(np.array(spacings), 10, axis=0)],
        "spacings_differ": bool(np.ptp(np.array(spacings), axis=0).max() > 1e-3),
        "foreground_fraction": float(np.mean(fg)),
        "foreground_percentiles": [float(np.percentile(fgv, 0.5)), float(np.percentile(fgv, 99.5))],
        "foreground_mean": float(fgv.mean()),
        "foreground_std": float(fgv.std() + 1e-8),
        "skipped": len(manifest.skipped),
    }


def _check_channels(case: SegCase, loaded: Loaded, manifest: SegManifest) -> None:
    """A case must have the channels dataset.json declares (a 4D image where a 3D one is
    expected would otherwise train a model on a time series' frames as channels)."""
    declared = len(manifest.modality) if manifest.layout == "decathlon" else 0
    if declared and loaded.image.shape[0] != declared:
        shape = tuple(loaded.image.shape[1:])
        raise BadImageError(
            f"case {case.case_id}: {loaded.image.shape[0]} channel(s) of shape {shape} where "
            f"dataset.json declares {declared} ({', '.join(manifest.modality)})",
            case.images[0],
        )
