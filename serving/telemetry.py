"""Prometheus metrics (``GET /metrics``) and structured access logs, both fed per finished request.

Metrics need ``prometheus_client`` (in the ``serving`` extra); each app has its own registry (no
process-global state). With ``--workers N`` every process counts its own requests, and a scrape
reaches whichever process accepts it: scrape each process (one port each) or run one worker per
container when exact totals matter.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from serving.guard import RequestRecord

#: the paths counted under their own name; any other path (a scanner's guesses) is "other", so a
#: hostile client cannot grow the number of time series
KNOWN_PATHS = frozenset({"/predict", "/health", "/ready", "/metadata", "/metrics", "/openapi.json"})
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 65536)


def metrics_available() -> bool:
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return False
    return True


class Metrics:
    """Request counts, latency, errors by kind, and micro-batch sizes, in one registry."""

    content_type = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("recsys_serving_requests", "HTTP requests answered (status 0: client left)",
                                ["path", "status"], registry=self.registry)
        self.latency = Histogram("recsys_serving_request_seconds", "time from request start to answer", ["path"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.errors = Counter("recsys_serving_errors", "failed requests by kind (the error code of the answer)",
                              ["code"], registry=self.registry)
        self.batch_rows = Histogram("recsys_serving_batch_rows", "rows per ONNX Runtime call (micro-batch size)",
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.batch_requests = Histogram("recsys_serving_batch_requests", "requests merged into one ONNX Runtime call",
                                        buckets=BATCH_BUCKETS[:11], registry=self.registry)
        self.batch_seconds = Histogram("recsys_serving_batch_seconds", "ONNX Runtime time per micro-batch",
                                       buckets=LATENCY_BUCKETS, registry=self.registry)
        # labelled children by label values: prometheus_client's .labels() costs a few µs per call
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}

    def observe_request(self, record: RequestRecord) -> None:
        key = (record.path if record.path in KNOWN_PATHS else "other", record.status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (self.requests.labels(key[0], str(key[1])), self.latency.labels(key[0]))
        children[0].inc()
        children[1].observe(record.seconds)
        if record.error is not None:
            self.errors.labels(record.error).inc()
        elif record.status >= 400:  # answered by the framework (404, 405): its status is the kind
            self.errors.labels(f"http_{record.status}").inc()

    def observe_batch(self, rows: int, requests: int, seconds: float) -> None:
        self.batch_rows.observe(rows)
        self.batch_requests.observe(requests)
        self.batch_seconds.observe(seconds)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class AccessLog:
    """One JSON object per finished request on the ``serving.access`` logger (to stdout by default)."""

    def __init__(self, logger: logging.Logger | None = None):
        self.logger = logger or access_logger()

    def __call__(self, record: RequestRecord) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z",
            "client": f"{record.client[0]}:{record.client[1]}" if record.client else None, "method": record.method, "path": record.path[:200],
            "status": record.status, "ms": round(record.seconds * 1000, 3),
        }
        if record.error is not None:
            entry["error"] = record.error
        self.logger.info(json.dumps(entry))


def access_logger() -> logging.Logger:
    """``serving.access``: bare JSON lines on stdout, not mixed into the server's own log format."""
    logger = logging.getLogger("serving.access")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger
