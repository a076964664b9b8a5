"""One audit record per ``/v1`` request, written before the answer leaves.

``Audited`` wraps a route's body: whatever the route ends with (an answer, a refusal
as ``HTTPException``, an unexpected error) is recorded with the caller's key id, the
model's name, version and weights sha256, the upload's sha256, a small summary of the
result, the latency and the status; the metrics are updated with it. If the record
cannot be written the answer is replaced by a 503: the service never answers a
request it has not recorded.

What is recorded identifies no patient: key ids, hashes of the uploaded bytes, model
names, labels and volumes; never file names, DICOM attributes or pixel data.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import HTTPException
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from scandx.serve.store import StoreUnavailable

log = logging.getLogger("scandx.serve")


@dataclass
class Caller:
    key_id: str | None  # None: no key exists and the service listens on loopback only
    role: str


@dataclass
class Audited:
    state: Any
    endpoint: str
    model: Any = None  # ServedModel
    caller: Caller | None = None
    input_sha256: str | None = None
    summary: dict[str, Any] | None = None
    started: float = field(default_factory=time.perf_counter)

    async def __aenter__(self) -> Audited:
        return self

    async def __aexit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        error: str | None = None
        if exc is None:
            status = 200
        elif isinstance(exc, StarletteHTTPException):  # fastapi's too; form parsing's 400
            status, error = exc.status_code, str(exc.detail)[:500]
        elif isinstance(exc, StoreUnavailable):  # the database went away mid-request
            status, error = 503, exc.reason[:500]
        else:
            status, error = 500, f"internal error ({type(exc).__name__})"
            log.exception("internal error on %s", self.endpoint, exc_info=exc)
        seconds = time.perf_counter() - self.started
        m = self.model
        try:
            await run_in_threadpool(
                self.state.store.record,
                key_id=self.caller.key_id if self.caller else None,
                model=m.name if m else None,
                model_version=m.version if m else None,
                weights_sha256=m.weights_sha256 if m else None,
                input_sha256=self.input_sha256,
                status=status,
                latency_ms=round(seconds * 1000, 3),
                summary=self.summary,
                endpoint=self.endpoint,
                error=error,
            )
        except Exception as e:  # noqa: BLE001 - no record, no answer
            log.error("audit record not written (%s): answering 503", type(e).__name__)
            self.state.metrics.observe(self.endpoint, m.name if m else "", 503, seconds)
            raise HTTPException(
                503,
                "the audit trail cannot be written; the request was not answered",
                headers={"Retry-After": "5"},
            ) from None
        self.state.metrics.observe(self.endpoint, m.name if m else "", status, seconds)
        if status == 500:
            raise HTTPException(500, "internal error; it has been logged") from None
        if isinstance(exc, StoreUnavailable):
            raise HTTPException(503, exc.reason, headers={"Retry-After": "5"}) from None
        return False
