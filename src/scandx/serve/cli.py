"""``scandx serve``: argument parsing and the uvicorn launch; the service is
``serve.app.create_app``."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
from typing import Any

from scandx.serve.config import RUNTIMES, ServeConfig

log = logging.getLogger("scandx.serve")
ENV_CONFIG = "SCANDX_SERVE_CONFIG"


def add_serve_command(sub: Any) -> None:
    s = sub.add_parser(
        "serve",
        help="serve trained runs over HTTP: REST API, web page, audit trail",
        description="Serve trained runs (classification or segmentation, single or "
        "ensemble) over HTTP with API keys, an audit trail and a web page at /. "
        "Listens on 127.0.0.1 unless --host says otherwise; any other address needs "
        "API keys (scandx keys create).",
        epilog="example: scandx serve runs/pneu vessels=runs/drive --port 8000",
    )
    s.add_argument("runs", nargs="+", metavar="RUN", help="a run folder, or NAME=RUN")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="port (8000)")
    s.add_argument(
        "--db",
        default=None,
        help="audit and keys database URL (sqlite:///FILE or "
        "postgresql://...; default: serve.db in the scandx config folder)",
    )
    s.add_argument("--workers", type=int, default=1, help="worker processes (1)")
    s.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="torch",
        help="torch (eager PyTorch) or onnx (ONNX Runtime; scandx export first)",
    )
    s.add_argument("--max-upload-mb", type=float, default=256.0, help="request body limit (256)")
    s.add_argument(
        "--max-pixels",
        type=int,
        default=150_000_000,
        help="samples per input, rows x columns x frames x channels (150e6)",
    )
    s.add_argument(
        "--max-queue",
        type=int,
        default=16,
        help="predictions running or waiting per worker before 503 (16)",
    )
    s.add_argument("--tls-cert", default=None, help="PEM certificate: serve HTTPS")
    s.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert")
    s.add_argument(
        "--index",
        action="append",
        default=[],
        metavar="INDEX",
        help="a similar-case index (scandx embed) built with one of the served runs: the "
        "web page shows the nearest cases beside a prediction (repeatable)",
    )


def config_from(args: argparse.Namespace) -> ServeConfig:
    from scandx.errors import ScandxError

    if not 1 <= args.port <= 65535 or args.workers < 1 or args.max_queue < 1:
        raise ScandxError("--port must be 1-65535, --workers and --max-queue at least 1")
    if args.max_upload_mb <= 0 or args.max_pixels < 1:
        raise ScandxError("--max-upload-mb and --max-pixels must be positive")
    return ServeConfig(
        runs=list(args.runs),
        host=args.host,
        port=args.port,
        db=args.db,
        workers=args.workers,
        runtime=args.runtime,
        max_upload_mb=args.max_upload_mb,
        max_pixels=args.max_pixels,
        max_queue=args.max_queue,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        indexes=list(args.index),
    )


def run_serve(args: argparse.Namespace) -> int:
    """Check everything first (runs, models, database, keys for a non-loopback address:
    one line and exit 2 on a problem), then hand over to uvicorn."""
    import uvicorn

    from scandx.serve.app import ServiceState, create_app

    config = config_from(args)
    state = ServiceState(config)
    state.start()  # loads and checks every model and the database, before listening
    ssl = (
        {"ssl_certfile": config.tls_cert, "ssl_keyfile": config.tls_key} if config.tls_cert else {}
    )
    scheme = "https" if config.tls_cert else "http"
    log.info(
        "scandx serve on %s://%s:%d/ (%d worker(s))",
        scheme,
        config.host,
        config.port,
        config.workers,
    )
    common = {"host": config.host, "port": config.port, "log_level": "warning", **ssl}
    if config.workers == 1:
        uvicorn.run(create_app(config, state), **common)
        return 0
    os.environ[ENV_CONFIG] = config.to_json()
    shared = tempfile.mkdtemp(prefix="scandx-metrics-")  # the workers' shared metrics
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = shared
    try:
        uvicorn.run("scandx.serve.cli:app_from_env", factory=True, workers=config.workers, **common)
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    return 0


def app_from_env() -> Any:
    """The app of a worker process (``--workers N``): the config the parent checked."""
    from scandx.serve.app import create_app

    return create_app(ServeConfig.from_json(os.environ[ENV_CONFIG]))
