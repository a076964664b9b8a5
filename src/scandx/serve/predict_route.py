"""``POST /v1/models/{name}/predict``: receive the upload, check it, predict, answer.

The body is read as multipart (field ``file``) into a private temporary folder that
is removed when the request ends, whatever happens; the upload's sha256 is taken
while it is received (the audit trail keeps it, never the file). The upload is then
sniffed and checked against the limits (``serve.uploads``) before anything is
decoded, and the model predicts in a worker thread.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from scandx.core.privacy import scrub_paths
from scandx.errors import ScandxError
from scandx.serve.http_guard import BodyTooLarge, too_large_message
from scandx.serve.uploads import UploadError, accept

FIELD = "file"
FOV = "fov"  # optional: the field-of-view mask of a model trained with them


async def predict_upload(
    state: Any, request: Request, model: Any, rec: Any, options: dict[str, Any]
) -> dict[str, Any]:
    def work(upload: Any, extra: dict[str, Any]) -> list[dict]:
        return model.predict(upload, **options, **extra)

    upload, results = await answer_upload(state, request, rec, work)
    rec.summary = summarize(model.task, results)
    return {
        "model": model.header(),
        "input": {"sha256": rec.input_sha256, "kind": upload.kind, "images": len(results)},
        "predictions": results,
    }


async def answer_upload(
    state: Any, request: Request, rec: Any, work: Callable[[Any, dict[str, Any]], Any]
) -> tuple[Any, Any]:
    """Admit the request, receive and check its upload, run ``work(upload, extra)``
    (``extra``: the accepted ``fov`` mask, when sent) in a worker thread; (upload, what
    ``work`` returned). Refusals become HTTP errors with the reason."""
    state.admit()  # 503 with Retry-After when the queue is full
    seconds = None
    try:
        with tempfile.TemporaryDirectory(prefix="scandx-upload-") as tmp:
            work_dir = Path(tmp)
            received = await receive_files(request, work_dir, state)
            rec.input_sha256 = received[FIELD]
            limits = state.config.limits()
            upload = await run_in_threadpool(accept, work_dir / FIELD, limits, work_dir)
            extra = {}
            if FOV in received:  # a field-of-view mask beside the image
                extra["fov"] = await run_in_threadpool(accept, work_dir / FOV, limits, work_dir)
            start = time.perf_counter()
            results = await run_in_threadpool(lambda: work(upload, extra))
            seconds = time.perf_counter() - start
    except UploadError as e:
        raise HTTPException(e.status, e.reason) from None
    except ScandxError as e:
        raise HTTPException(422, scrub_paths(e.reason)) from None
    finally:
        state.release(seconds)
    return upload, results


async def receive_files(request: Request, work: Path, state: Any) -> dict[str, str]:
    """Save the multipart fields ``file`` (required) and ``fov`` (optional) in ``work``
    under their field names; the sha256 of each."""
    kind = request.headers.get("content-type", "")
    if not kind.lower().startswith("multipart/form-data"):
        raise HTTPException(
            415, f"send the image as multipart/form-data, field {FIELD!r} (got {kind[:60]!r})"
        )
    try:
        form = await request.form(max_files=2, max_fields=8)
    except BodyTooLarge:
        raise HTTPException(413, too_large_message(state.config.limits().max_bytes)) from None
    try:
        if not isinstance(form.get(FIELD), UploadFile):
            raise HTTPException(422, f"no file in the multipart field {FIELD!r}")
        digests = {}
        for name in (FIELD, FOV):
            item = form.get(name)
            if isinstance(item, UploadFile):
                digests[name] = await run_in_threadpool(_copy, item, work / name)
        return digests
    finally:
        await form.close()


def _copy(item: UploadFile, target: Path) -> str:
    h = hashlib.sha256()
    item.file.seek(0)
    with open(target, "wb") as out:
        while chunk := item.file.read(1 << 20):
            h.update(chunk)
            out.write(chunk)
    return h.hexdigest()


def summarize(task: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    """What the audit trail keeps of an answer: labels and flags, or region volumes."""
    if task == "segmentation":
        r = results[0]
        unit = r["volume_unit"]
        return {"regions": {k: v[unit] for k, v in list(r["regions"].items())[:16]}, "unit": unit}
    return {
        "images": len(results),
        "labels": [r["label"] for r in results[:16]],
        "ood_flags": sum(1 for r in results if r.get("ood_flag")),
    }
