"""``recsys-mtl-serve <export_dir>``: serve an exported model over HTTP (127.0.0.1 by default)."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Sequence

from serving.app import ServeSettings

if TYPE_CHECKING:
    from fastapi import FastAPI

#: how the parent hands its settings to worker processes (``--workers`` > 1)
WORKER_ENV = "RECSYS_MTL_SERVE_WORKER"


def build_parser() -> argparse.ArgumentParser:
    d = ServeSettings()
    p = argparse.ArgumentParser(prog="recsys-mtl-serve", description=__doc__.splitlines()[0])
    p.add_argument("export_dir", help="folder written by 'recsys-mtl export'")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--variant", default="fp32", help="fp32, int8 or fp16 (as exported)")
    p.add_argument("--provider", default="auto", choices=["auto", "cpu", "cuda"], help="onnxruntime execution provider")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0 = all cores)")
    p.add_argument("--no-spin", action="store_true", help="onnxruntime threads sleep instead of spinning (shared cores)")
    p.add_argument("--max-batch", type=int, default=d.max_batch, help="most rows per ONNX call (micro-batching)")
    p.add_argument("--max-wait-ms", type=float, default=d.max_wait_ms, help="how long a batch waits for more requests")
    p.add_argument("--max-request-rows", type=int, default=d.max_request_rows)
    p.add_argument("--max-body-mb", type=float, default=d.max_body_bytes / 2**20)
    p.add_argument("--header-timeout", type=float, default=d.header_timeout_s,
                   help="seconds a request's headers may take (else 408 and close)")
    p.add_argument("--body-timeout", type=float, default=d.body_timeout_s,
                   help="seconds a request's body may take (else 408 and close)")
    p.add_argument("--keep-alive", type=float, default=d.keep_alive_s, help="seconds an idle keep-alive connection is kept")
    p.add_argument("--max-header-kb", type=float, default=d.max_header_bytes / 1024,
                   help="largest request header block (else 431 and close)")
    p.add_argument("--workers", type=int, default=1,
                   help="server processes sharing the port, each with its own model and micro-batcher")
    p.add_argument("--metrics", action=argparse.BooleanOptionalAction, default=None,
                   help="Prometheus metrics at /metrics (default: on when prometheus_client is installed)")
    p.add_argument("--access-log", action="store_true", help="one JSON line per request on stdout")
    p.add_argument("--graceful-timeout", type=float, default=30.0, help="seconds to finish in-flight requests on shutdown")
    p.add_argument("--log-level", default="info")
    return p


def _predictor_args(args: argparse.Namespace) -> dict[str, Any]:
    return {"export_dir": args.export_dir, "variant": args.variant, "provider": args.provider,
            "intra_threads": args.threads, "allow_spinning": not args.no_spin}


def _build_app(predictor_args: dict[str, Any], settings: ServeSettings, extras: dict[str, bool]) -> "FastAPI":
    from serving.app import create_app
    from serving.telemetry import AccessLog, Metrics
    from serving.predictor import Predictor

    return create_app(Predictor(**predictor_args), settings, observers=[AccessLog()] if extras["access_log"] else [],
                      metrics=Metrics() if extras["metrics"] else None)


def worker_app() -> "FastAPI":
    """App factory run in each worker process of ``--workers N``."""
    config = json.loads(os.environ[WORKER_ENV])
    return _build_app(config["predictor"], ServeSettings(**config["settings"]), config["extras"])


def _extras(args: argparse.Namespace) -> dict[str, bool]:
    from serving.telemetry import metrics_available

    if args.metrics is True and not metrics_available():
        raise ValueError("--metrics needs prometheus_client (pip install 'recsys-mtl[serving]')")
    return {"metrics": metrics_available() if args.metrics is None else args.metrics, "access_log": args.access_log}


def http_options(settings: ServeSettings) -> dict[str, Any]:
    """uvicorn's HTTP protocol options: httptools with the header limits (:mod:`serving.protocol`),
    or, without httptools, h11 with its header size limit only (no header deadline)."""
    try:
        from serving.protocol import LimitedHttpToolsProtocol
    except ImportError:
        logging.getLogger(__name__).warning("httptools is not installed: no header timeout (install uvicorn[standard])")
        return {"http": "h11", "h11_max_incomplete_event_size": settings.max_header_bytes}
    return {"http": functools.partial(LimitedHttpToolsProtocol, header_timeout=settings.header_timeout_s,
                                      max_header_bytes=settings.max_header_bytes)}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    import uvicorn

    settings = ServeSettings(
        max_body_bytes=int(args.max_body_mb * 2**20),
        max_request_rows=args.max_request_rows,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        header_timeout_s=args.header_timeout,
        body_timeout_s=args.body_timeout,
        keep_alive_s=args.keep_alive,
        max_header_bytes=int(args.max_header_kb * 1024),
    )
    try:  # load once here, so a bad export is one clear error before any worker starts
        extras = _extras(args)
        app = _build_app(_predictor_args(args), settings, extras)
    except (OSError, ValueError) as exc:  # ExportLoadError and bad options: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    common: dict[str, Any] = {"host": args.host, "port": args.port, "log_level": args.log_level,
                              "timeout_graceful_shutdown": args.graceful_timeout, "access_log": False,
                              "timeout_keep_alive": settings.keep_alive_s, **http_options(settings)}
    if args.workers <= 1:
        uvicorn.run(app, **common)
        return 0
    del app  # each worker loads its own copy
    os.environ[WORKER_ENV] = json.dumps({"predictor": _predictor_args(args), "settings": asdict(settings), "extras": extras})
    uvicorn.run("serving.cli:worker_app", factory=True, workers=args.workers, **common)
    return 0


if __name__ == "__main__":
    sys.exit(main())
