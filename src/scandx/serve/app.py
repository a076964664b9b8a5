"""The service: ``create_app(config)`` builds the FastAPI application; models and the
audit store are opened at start-up (the lifespan), never at import.

Routes (all JSON; keys as ``Authorization: Bearer <key>`` or ``X-API-Key``):

- ``GET /healthz`` (alive), ``GET /readyz`` (models loaded, audit database reachable),
  ``GET /metrics`` (Prometheus), ``GET /openapi.json``: no key needed, nothing about a
  patient in them;
- ``GET /v1/models``, ``POST /v1/models/{name}/predict``, ``POST
  /v1/models/{name}/similar`` (the nearest cases of a ``--index``): role clinician (or
  admin);
- ``GET /v1/audit``, ``GET/POST /v1/keys``, ``DELETE /v1/keys/{key_id}``: role admin;
- ``GET /``: the web page (``serve/web``).

Every ``/v1`` request is written to the audit trail (``serve.store``) BEFORE its answer
is sent: an answer whose record cannot be written is not sent (503), so a server
killed at any moment has a record of everything it answered.
"""

from __future__ import annotations

import logging
import math
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from scandx import __version__
from scandx.serve.audit_context import Audited, Caller
from scandx.serve.config import ServeConfig
from scandx.serve.http_guard import GuardMiddleware
from scandx.serve.metrics import ServeMetrics
from scandx.serve.predict_route import predict_upload
from scandx.serve.served_model import ServedModel
from scandx.serve.similar_route import attach_indexes, similar_upload
from scandx.serve.store import claimed_key_id

log = logging.getLogger("scandx.serve")
WEB = Path(__file__).parent / "web"
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}


class ServiceState:
    """What the routes share: config, models, audit store, metrics, admission count."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.models: dict[str, ServedModel] = {}
        self.store: Any = None
        self.metrics = ServeMetrics()
        self.pending = 0  # predictions running or waiting in this process
        self.recent_seconds = 1.0  # moving average of prediction time, for Retry-After

    def start(self) -> None:
        from scandx.serve.store import Store

        self.config.check()
        _raise_pillow_limit(self.config.max_pixels)
        self.store = Store(self.config.db)
        if not self.config.is_loopback() and not self.store.has_keys():
            raise_open_service(self.config.host)
        for name, run in self.config.named_runs():
            self.models[name] = ServedModel.load(run, name, self.config.runtime)
            log.info(
                "serving %s (%s, weights %s...)",
                name,
                self.models[name].task,
                self.models[name].weights_sha256[:12],
            )
        attach_indexes(self.models, self.config.indexes)
        if not self.store.has_keys():
            log.warning(
                "no API keys exist: anyone on this machine may use the service "
                "(create one with: scandx keys create --role admin)"
            )

    def admit(self) -> None:
        if self.pending >= self.config.max_queue:
            wait = max(1, math.ceil(self.pending * self.recent_seconds))
            raise HTTPException(
                503,
                f"the service is busy ({self.pending} predictions running or queued); "
                f"retry in {wait} s",
                headers={"Retry-After": str(wait)},
            )
        self.pending += 1
        self.metrics.in_flight.inc()

    def release(self, seconds: float | None) -> None:
        self.pending -= 1
        self.metrics.in_flight.dec()
        if seconds is not None:
            self.recent_seconds = 0.8 * self.recent_seconds + 0.2 * seconds


def _raise_pillow_limit(max_pixels: int) -> None:
    """Pillow refuses images above twice its own MAX_IMAGE_PIXELS (179 million by
    default) whatever the service's limit says: make ``--max-pixels`` the one limit."""
    from PIL import Image

    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels


def raise_open_service(host: str) -> None:
    from scandx.errors import ScandxError

    raise ScandxError(
        f"refusing to listen on {host} without API keys: anyone who can reach it could use "
        "the models and read results. Create a key first (scandx keys create --role admin "
        "--db ...), or listen on 127.0.0.1"
    )


def create_app(config: ServeConfig, started: ServiceState | None = None) -> FastAPI:
    """The application; ``started`` is a state whose models are already loaded (``scandx
    serve`` with one worker loads them once, before listening, to fail early)."""
    state = started or ServiceState(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if not state.models:
            await run_in_threadpool(state.start)
        yield

    app = FastAPI(
        title="scandx",
        version=__version__,
        description="Medical image diagnosis models served with an audit trail.",
        lifespan=lifespan,
        docs_url=None,  # Swagger UI loads scripts from a CDN; the schema is at /openapi.json
        redoc_url=None,
    )
    app.state.scandx = state
    app.add_middleware(GuardMiddleware, max_bytes=config.limits().max_bytes)

    async def authorize(request: Request, role: str, rec: Audited) -> None:
        """Who is calling (``rec.caller``); 401 without a valid key, 403 without the role.
        A refused key's id (never its secret) is kept for the audit record."""
        token = request.headers.get("x-api-key") or ""
        auth = request.headers.get("authorization") or ""
        if auth.lower().startswith("bearer "):
            token = auth[7:].strip()
        if not token:
            if not await run_in_threadpool(state.store.has_keys):
                rec.caller = Caller(None, "admin")  # no key exists; loopback only
                return
            raise HTTPException(
                401, "an API key is required", headers={"WWW-Authenticate": "Bearer"}
            )
        key = await run_in_threadpool(state.store.authenticate, token)
        rec.caller = Caller(key.key_id if key else claimed_key_id(token), key.role if key else "")
        if key is None:
            raise HTTPException(
                401, "unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"}
            )
        if role == "admin" and key.role != "admin":
            raise HTTPException(403, f"this needs the admin role; the key's role is {key.role}")

    def audited(request: Request, endpoint: str, model: ServedModel | None = None) -> Audited:
        return Audited(state, endpoint, model)

    @app.get("/healthz", tags=["service"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["service"])
    async def readyz() -> JSONResponse:
        try:
            await run_in_threadpool(state.store.has_keys)
            db = "ok"
        except Exception as e:  # noqa: BLE001 - any database failure means not ready
            db = f"unreachable ({type(e).__name__})"
        ready = db == "ok" and bool(state.models)
        body = {"status": "ready" if ready else "not ready", "models": len(state.models), "db": db}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["service"])
    async def metrics() -> Response:
        data, kind = state.metrics.exposition()
        return Response(data, media_type=kind)

    @app.get("/v1/models", tags=["models"])
    async def list_models(request: Request) -> dict[str, Any]:
        async with audited(request, "models") as rec:
            await authorize(request, "clinician", rec)
            return {"models": [m.describe() for m in state.models.values()]}

    @app.post("/v1/models/{name}/predict", tags=["models"], openapi_extra=UPLOAD_BODY)
    async def predict(
        request: Request,
        name: str,
        heatmap: bool = False,
        preview: bool = False,
        mask_format: Literal["nifti", "png", "dicom-seg"] | None = None,
    ) -> dict[str, Any]:
        """Predict on one upload (multipart field ``file``): a PNG/JPEG/TIFF, a DICOM
        file, a zip of one DICOM series, or a NIfTI volume. ``heatmap=true`` adds the
        explanation overlay (classifiers); ``preview=true`` adds the mask over the image
        as PNGs, slice by slice for volumes (segmenters); ``mask_format`` asks for the
        mask as nifti, png or dicom-seg (default: DICOM SEG for a DICOM series, NIfTI for
        NIfTI, PNG for 2D images)."""
        model = state.models.get(name)
        async with audited(request, "predict", model) as rec:
            await authorize(request, "clinician", rec)
            if model is None:
                raise HTTPException(404, f"no model named {name!r}; see GET /v1/models")
            options = {"heatmap": heatmap, "preview": preview, "mask_format": mask_format}
            return await predict_upload(state, request, model, rec, options)

    @app.post("/v1/models/{name}/similar", tags=["models"], openapi_extra=UPLOAD_BODY)
    async def similar(request: Request, name: str, k: int = 8) -> dict[str, Any]:
        """The ``k`` cases of the model's similar-case index (``scandx serve --index``)
        nearest to one upload (multipart field ``file``), with distances, labels and
        thumbnails; a query unlike the indexed images (another modality, colour or
        dimensionality) is refused with the reason (422)."""
        model = state.models.get(name)
        async with audited(request, "similar", model) as rec:
            await authorize(request, "clinician", rec)
            if model is None:
                raise HTTPException(404, f"no model named {name!r}; see GET /v1/models")
            return await similar_upload(state, request, model, rec, k)

    @app.get("/v1/audit", tags=["admin"])
    async def audit(
        request: Request,
        since: datetime | None = None,
        until: datetime | None = None,
        model: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> dict[str, Any]:
        async with audited(request, "audit") as rec:
            await authorize(request, "admin", rec)
            if not 1 <= limit <= 1000 or offset < 0:
                raise HTTPException(422, "limit must be 1 to 1000 and offset 0 or more")
            rows = await run_in_threadpool(
                state.store.audit,
                since=since,
                until=until,
                model=model,
                limit=limit,
                offset=offset,
            )
            return {"records": rows}

    @app.get("/v1/keys", tags=["admin"])
    async def list_keys(request: Request) -> dict[str, Any]:
        async with audited(request, "keys") as rec:
            await authorize(request, "admin", rec)
            keys = await run_in_threadpool(state.store.list_keys)
            return {"keys": [key_json(k) for k in keys]}

    @app.post("/v1/keys", tags=["admin"])
    async def create_key(request: Request, role: str, label: str = "") -> dict[str, Any]:
        async with audited(request, "keys") as rec:
            await authorize(request, "admin", rec)
            try:
                token, info = await run_in_threadpool(state.store.create_key, role, label)
            except Exception as e:  # ScandxError: unknown role
                raise HTTPException(422, getattr(e, "reason", str(e))) from None
            return {"key": token, **key_json(info), "note": "shown once; store it now"}

    @app.delete("/v1/keys/{key_id}", tags=["admin"])
    async def revoke_key(request: Request, key_id: str) -> dict[str, Any]:
        async with audited(request, "keys") as rec:
            await authorize(request, "admin", rec)
            if not await run_in_threadpool(state.store.revoke, key_id):
                raise HTTPException(404, "no active key with that id")
            return {"revoked": key_id}

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        index = WEB / "index.html"
        if not index.is_file():
            return JSONResponse({"detail": "the web page is not installed"}, status_code=404)
        return FileResponse(index, media_type="text/html")

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        path = WEB / name
        if "/" in name or name.startswith(".") or not path.is_file():
            return JSONResponse({"detail": "not found"}, status_code=404)
        return FileResponse(path)

    return app


def key_json(info: Any) -> dict[str, Any]:
    return {
        "key_id": info.key_id,
        "role": info.role,
        "label": info.label,
        "created_at": _iso(info.created_at),
        "revoked_at": _iso(info.revoked_at),
    }


def _iso(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value
