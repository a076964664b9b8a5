"""Prometheus metrics of the service (prometheus_client): request counts by endpoint,
model and status, a latency histogram, errors by kind, and the requests in flight.

With ``--workers N`` the processes share their metrics through prometheus_client's
multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set by ``scandx serve`` before the
workers start), so ``/metrics`` answers for the whole service, whichever worker
serves the scrape.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class ServeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "scandx_requests", "Requests answered", ["endpoint", "model", "status"], registry=r
        )
        self.latency = Histogram(
            "scandx_request_seconds",
            "Time from request to answer",
            ["endpoint", "model"],
            buckets=BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "scandx_errors", "Requests answered with an error", ["endpoint", "kind"], registry=r
        )
        self.in_flight = Gauge(
            "scandx_predictions_in_flight",
            "Predictions running or queued",
            registry=r,
            multiprocess_mode="livesum",
        )

    def observe(self, endpoint: str, model: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, model, str(status)).inc()
        self.latency.labels(endpoint, model).observe(seconds)
        if status >= 400:
            kind = "client" if status < 500 else "server"
            self.errors.labels(endpoint, f"{kind}_{status}").inc()

    def exposition(self) -> tuple[bytes, str]:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
