"""``POST /v1/models/{name}/similar``: the nearest cases of a served model's
similar-case index (``scandx serve --index INDEX``) to one upload.

An index is attached at start-up to the served run whose weights built it (the
manifest's ``run_sha256`` against the model's), and embeds queries with that run, so
the page's similar cases come from the same network as the prediction beside them. The
query is checked against the indexed images as ``scandx similar`` checks it (another
modality, colour or dimensionality: 422 with the reason). Thumbnails come from the
index (base64 PNG), never from the original files.
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request

from scandx.errors import ScandxError
from scandx.serve.predict_route import FIELD, answer_upload

log = logging.getLogger("scandx.serve")
MAX_K = 50


def attach_indexes(models: dict[str, Any], indexes: list[str]) -> None:
    """Open each index and give it to the served model whose weights built it."""
    from scandx.retrieval.search import SimilarIndex

    for path in indexes:
        index = SimilarIndex(path)
        sha = index.space.get("run_sha256") or ""
        owners = [m for m in models.values() if sha and m.weights_sha256 == sha]
        if not owners:
            raise ScandxError(
                f"--index was built with weights {sha[:12] or '(none: raw pixels)'}, which no "
                "served run has; build it with scandx embed SERVED_RUN",
                path,
            )
        model = owners[0]
        if model.similar_index is not None:
            raise ScandxError(f"two --index folders for model {model.name!r}; give one", path)
        index.run = model.run  # embed with the served copy of the run
        index.embedder()  # loaded and checked now, not on the first request
        model.similar_index = index
        log.info("similar cases for %s: %d indexed cases", model.name, index.count)


def find_similar(model: Any, upload: Any, k: int) -> list[dict[str, Any]]:
    """The nearest cases of each image of the upload (every image of a DICOM series)."""
    from scandx.data.readers import read_image

    index = model.similar_index
    files = upload.images if upload.kind == "dicom-series" else [upload.path]
    arrays = []
    for i, f in enumerate(files, start=1):
        arr, meta = read_image(f)
        arrays.append((f"image {i}", arr, meta))
    with model.lock:  # the embedder's forward hooks are not thread-safe
        results = index.query_arrays(arrays, k)
    return [
        {
            "index": i,
            "warnings": r.warnings,
            "ood_score": r.ood_score,
            "neighbours": [neighbour_json(index, n) for n in r.neighbours],
        }
        for i, r in enumerate(results, start=1)
    ]


def neighbour_json(index: Any, n: dict[str, Any]) -> dict[str, Any]:
    return {
        "rank": n["rank"],
        "distance": round(float(n["distance"]), 6),
        "case_id": n["case_id"],
        "label": n["label"],
        "split": n["split"],
        "modality": n.get("modality", ""),
        "thumbnail_png": base64.b64encode(index.thumbnail(n)).decode("ascii"),
    }


async def similar_upload(
    state: Any, request: Request, model: Any, rec: Any, k: int
) -> dict[str, Any]:
    index = model.similar_index
    if index is None:
        raise HTTPException(
            404, f"model {model.name!r} has no similar-case index (scandx serve --index)"
        )
    if not 1 <= k <= min(MAX_K, index.count):
        raise HTTPException(422, f"k must be 1 to {min(MAX_K, index.count)}, got {k}")

    def work(upload: Any, extra: dict[str, Any]) -> list[dict[str, Any]]:
        if extra:
            raise ScandxError(f"send only the query image (multipart field {FIELD!r})")
        return find_similar(model, upload, k)

    upload, results = await answer_upload(state, request, rec, work)
    rec.summary = {
        "images": len(results),
        "k": k,
        "nearest_labels": [r["neighbours"][0]["label"] for r in results[:16] if r["neighbours"]],
    }
    m = index.manifest
    return {
        "model": model.header(),
        "input": {"sha256": rec.input_sha256, "kind": upload.kind, "images": len(results)},
        "index": {
            "cases": index.count,
            "embedding": m["space"]["kind"],
            "search": m["search"]["kind"],
            "metric": m["search"]["metric"],
            "source": Path(str(m.get("source", ""))).name,
        },
        "results": results,
    }
