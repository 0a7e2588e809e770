"""The HTTP service (FastAPI): POST /predict (JSON or Arrow IPC), /health, /ready, /metadata.

``POST /predict``

* ``Content-Type: application/json``: one row as an object, or many rows as an array of objects
  (fields = the export's input columns). Answer: ``{"rows": n, "outputs": {task: [...]}}`` with one
  value per row (a list of class probabilities for multiclass tasks).
* ``Content-Type: application/vnd.apache.arrow.stream``: an Arrow IPC stream whose columns are the
  inputs; the answer is an Arrow IPC stream with one column per task.

Bad requests get a 4xx JSON body ``{"error": ..., "field": ...}``: 400 malformed / empty body,
413 body or batch too large, 415 unknown content type, 422 missing / unknown field or wrong value.
"""

from __future__ import annotations

import json
import logging
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any, AsyncIterator

import numpy as np
import pyarrow as pa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from serving.batcher import BatcherClosed, MicroBatcher, Outputs
from serving.predictor import Predictor
from serving.schema import Feed, RequestError

log = logging.getLogger(__name__)

JSON_TYPE = "application/json"
ARROW_TYPE = "application/vnd.apache.arrow.stream"


@dataclass(frozen=True)
class ServeSettings:
    #: largest request body accepted (bytes)
    max_body_bytes: int = 32 * 1024 * 1024
    #: most rows in one request
    max_request_rows: int = 65536
    #: micro-batching: most rows per ONNX call, and how long to wait for more requests
    max_batch: int = 1024
    max_wait_ms: float = 1.0


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestError(f"invalid Content-Length {declared!r}", status=400)
        if int(declared) > limit:
            raise RequestError(f"body of {declared} bytes exceeds the limit of {limit}", status=413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(f"body exceeds the limit of {limit} bytes", status=413)
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        raise RequestError("empty body", status=400)
    return body


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except UnicodeDecodeError:
        raise RequestError("malformed JSON: body is not UTF-8", status=400) from None
    except json.JSONDecodeError as exc:
        raise RequestError(f"malformed JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", status=400) from None


def parse_arrow(body: bytes) -> pa.Table:
    try:
        return pa.ipc.open_stream(pa.BufferReader(body)).read_all()
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
        raise RequestError(f"malformed Arrow IPC stream: {str(exc).splitlines()[0]}", status=400) from None


def json_outputs(outputs: Outputs, rows: int) -> bytes:
    return json.dumps({"rows": rows, "outputs": {k: v.tolist() for k, v in outputs.items()}}).encode()


def arrow_outputs(outputs: Outputs) -> bytes:
    cols = {}
    for name, v in outputs.items():
        flat = pa.array(np.ascontiguousarray(v).reshape(-1))
        cols[name] = pa.FixedSizeListArray.from_arrays(flat, v.shape[1]) if v.ndim == 2 else flat
    table = pa.table(cols)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def create_app(predictor: Predictor, settings: ServeSettings = ServeSettings()) -> FastAPI:
    batcher = MicroBatcher(predictor.predict, settings.max_batch, settings.max_wait_ms)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        yield
        await batcher.close()  # graceful: queued requests are scored before the process exits

    app = FastAPI(title="recsys_mtl serving", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.predictor = predictor
    app.state.batcher = batcher

    @app.exception_handler(RequestError)
    async def _bad_request(request: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(BatcherClosed)
    async def _closing(request: Request, exc: BatcherClosed) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=503)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        ok = predictor.ready and batcher.running
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @app.get("/metadata")
    async def metadata() -> dict[str, Any]:
        return {
            **predictor.metadata,
            "serving": {"variant": predictor.variant, "providers": predictor.providers, **asdict(settings),
                        "batching": asdict(batcher.stats)},
        }

    async def predict(request: Request) -> Response:
        kind = request.headers.get("content-type", JSON_TYPE).split(";")[0].strip().lower()
        if kind not in (JSON_TYPE, ARROW_TYPE):
            raise RequestError(f"unsupported Content-Type {kind!r}; use {JSON_TYPE} or {ARROW_TYPE}", status=415)
        body = await read_body(request, settings.max_body_bytes)
        feed: Feed
        if kind == ARROW_TYPE:
            feed, rows = predictor.schema.from_arrow(parse_arrow(body), settings.max_request_rows)
            outputs = await batcher.submit(feed, rows)
            return Response(arrow_outputs(outputs), media_type=ARROW_TYPE)
        feed, rows = predictor.schema.from_json(parse_json(body), settings.max_request_rows)
        outputs = await batcher.submit(feed, rows)
        return Response(json_outputs(outputs, rows), media_type=JSON_TYPE)

    # a plain Starlette route: the hot path skips FastAPI's per-call dependency and response-model
    # machinery (it parses and validates the body itself), about a third of the server's CPU per request
    app.add_route("/predict", predict, methods=["POST"])
    return app
