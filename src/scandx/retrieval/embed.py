"""``scandx embed``: one vector per case of a source, with the case's labels and
metadata and a thumbnail, written as an index folder (``index_store``).

Any source ``train`` reads (``classification.data.sources``: MedMNIST .npz, CSV,
folder-per-class, catalog selection) is embedded by any Embedder: a run's, through
``tasks.task_for_run(run).load_embedder(run)``, or the raw-pixel baseline.
"""

from __future__ import annotations

import io
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from scandx.core.embedding import Embedder
from scandx.core.privacy import file_ref
from scandx.core.run_dir import RunDir
from scandx.errors import BadImageError, ScandxError
from scandx.retrieval.index_store import EXACT_BELOW, write_index
from scandx.tasks.classification.data.images import is_grey, read_case
from scandx.tasks.classification.data.manifest import Case, Manifest
from scandx.tasks.classification.data.source_checks import skip_or_raise

log = logging.getLogger(__name__)

THUMB = 96  # longest side of a stored thumbnail, pixels
BATCH = 64
# header fields kept in the case table (pseudonymised or non-identifying; never a path)
META_KEYS = ("modality", "photometric", "sex", "age", "manufacturer", "sop_instance_uid")


def load_embedder(run: str | Path | None, pixels: int | None = None) -> Embedder:
    """A run's Embedder (any task that gives one), or the pixel baseline."""
    if pixels is not None:
        from scandx.retrieval.pixels import PixelEmbedder

        return PixelEmbedder(pixels)
    if run is None:
        raise ScandxError("give a RUN to embed with, or --pixels for the raw-pixel baseline")
    from scandx.tasks import task_for_run

    return task_for_run(run).load_embedder(RunDir(Path(run)))


def png_bytes(arr: np.ndarray, max_side: int = THUMB) -> bytes:
    """A display array (C, H, W) or (C, F, H, W) in [0, 1] as an 8-bit PNG thumbnail:
    grey or RGB, the middle frame of a volume, its longest side brought down to
    ``max_side``."""
    from PIL import Image

    if arr.ndim == 4:
        arr = arr[:, arr.shape[1] // 2]
    grey = is_grey(arr)
    u8 = np.round(np.clip(arr[:1] if grey else arr[:3], 0, 1) * 255).astype(np.uint8)
    img = Image.fromarray(u8[0] if grey else np.moveaxis(u8, 0, -1))
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def label_text(manifest: Manifest, case: Case) -> str:
    """The case's label as text; '' for an unlabelled case (a target below 0 or None)."""
    t = case.target
    if t is None:
        return ""
    if manifest.task == "multilabel":
        return ";".join(c for c, v in zip(manifest.classes, t, strict=True) if int(v))  # type: ignore[arg-type]
    return manifest.classes[int(t)] if 0 <= int(t) < len(manifest.classes) else ""  # type: ignore[arg-type]


def image_facts(arr: np.ndarray) -> dict[str, Any]:
    """What the query checks compare: spatial dims, grey or colour, size."""
    spatial = list(arr.shape[1:])
    return {
        "spatial_dims": len(spatial),
        "channels": 1 if is_grey(arr) else int(arr.shape[0]),
        "height": int(spatial[-2]),
        "width": int(spatial[-1]),
        "frames": int(spatial[0]) if len(spatial) == 3 else 1,
    }


def case_row(manifest: Manifest, case: Case, arr: np.ndarray) -> dict[str, Any]:
    row: dict[str, Any] = {
        "case_id": case.case_id,
        "patient_id": case.patient_id,
        "label": label_text(manifest, case),
        "split": case.split,
        "file": f"{file_ref(case.path)}#{case.meta['npz_index']}"
        if "npz_key" in case.meta
        else file_ref(case.path),
        **image_facts(arr),
    }
    for key in META_KEYS:
        row[key] = str(case.meta.get(key) or "")
    return row


def summarise_images(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The manifest's ``images``: what the query checks compare a query with."""
    sides = np.array([max(r["height"], r["width"]) for r in rows])
    return {
        "modalities": dict(Counter(r["modality"] for r in rows if r["modality"])),
        "channels": {str(k): v for k, v in Counter(r["channels"] for r in rows).items()},
        "spatial_dims": sorted({r["spatial_dims"] for r in rows}),
        "longer_side": {
            "min": int(sides.min()),
            "median": float(np.median(sides)),
            "max": int(sides.max()),
        },
    }


def embed_source(
    embedder: Embedder,
    data: str | Path,
    out: str | Path,
    *,
    skip_bad: bool = False,
    image_root: str | Path | None = None,
    exact_below: int = EXACT_BELOW,
) -> dict[str, Any]:
    """Embed every case of ``data`` and write the index folder ``out``; returns its
    manifest. Without ``skip_bad`` the first unreadable case ends it (nothing written)."""
    from scandx.tasks.classification.data.sources import load_source

    manifest = load_source(data, image_root=image_root, skip_bad=skip_bad)
    skipped = list(manifest.skipped)
    rows: list[dict[str, Any]] = []
    thumbs: list[bytes] = []
    vectors: list[np.ndarray] = []
    pending: list[torch.Tensor] = []
    for case in tqdm(manifest.cases, desc="embedding", unit="img", leave=False, disable=None):
        try:
            arr = read_case(case)
            x = embedder.prepare_display(arr, case.path)
        except BadImageError as e:
            skip_or_raise(e, skipped, skip_bad)
            continue
        rows.append({"row": len(rows), **case_row(manifest, case, arr)})
        thumbs.append(png_bytes(arr))
        pending.append(x)
        if len(pending) == BATCH:
            vectors.append(embedder.embed(torch.stack(pending)))
            pending = []
    if pending:
        vectors.append(embedder.embed(torch.stack(pending)))
    if not rows:
        raise ScandxError("no readable images to embed", data)
    info = {
        "space": embedder.space,
        "source": file_ref(data),
        "task": manifest.task,
        "classes": manifest.classes,
        "skipped": len(skipped),
        "images": summarise_images(rows),
    }
    matrix = np.concatenate(vectors).astype(np.float32)
    return write_index(Path(out), matrix, rows, thumbs, info, exact_below=exact_below)
