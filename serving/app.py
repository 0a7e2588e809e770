"""The HTTP service (FastAPI): POST /predict (JSON or Arrow IPC), /health, /ready, /metadata,
/openapi.json (generated from the export's metadata) and /metrics (Prometheus, optional).

``POST /predict``

* ``Content-Type: application/json``: one row as an object, or many rows as an array of objects
  (fields = the export's input columns). Answer: ``{"rows": n, "outputs": {task: [...]}}`` with one
  value per row (a list of class probabilities for multiclass tasks).
* ``?tasks=a,b`` answers only those tasks (a ranking stage that needs one score). The micro-batch
  still runs the export's whole graph; to also skip the other tasks' experts and towers, export a
  task-sparse graph (``recsys-mtl export RUN --tasks a,b``) and serve that.
* ``Content-Type: application/vnd.apache.arrow.stream``: an Arrow IPC stream whose columns are the
  inputs; the answer is an Arrow IPC stream with one column per task.

Bad requests get a 4xx JSON body ``{"error": ..., "code": ..., "field": ...}``: 400 malformed /
empty body, 408 body too slow, 413 body or batch too large, 415 unknown content type, 422 missing /
unknown / repeated field or wrong value (see :mod:`serving.guard` for the rest).
"""

from __future__ import annotations

import json
import logging
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any, AsyncIterator, Sequence

import numpy as np
import pyarrow as pa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from serving.arrow_ipc import read_stream
from serving.batcher import MicroBatcher, Outputs
from serving.body import parse_json, read_body
from serving.guard import Guard, Observer
from serving.limits import NumericRange, feed_problem, limits_from_json
from serving.metadata import public_metadata
from serving.telemetry import Metrics
from serving.openapi import openapi_document
from serving.predictor import Predictor
from serving.schema import Feed, RequestError, clip, quoted

log = logging.getLogger(__name__)

JSON_TYPE = "application/json"
ARROW_TYPE = "application/vnd.apache.arrow.stream"


@dataclass(frozen=True)
class ServeSettings:
    #: largest request body accepted (bytes); an Arrow stream may not decode to more either
    max_body_bytes: int = 32 * 1024 * 1024
    #: most rows in one request
    max_request_rows: int = 65536
    #: micro-batching: most rows per ONNX call, and how long to wait for more requests
    max_batch: int = 1024
    max_wait_ms: float = 1.0
    #: slow clients: seconds for a request's headers, for its body, and for an idle keep-alive connection
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keep_alive_s: float = 5.0
    #: largest request header block (bytes)
    max_header_bytes: int = 64 * 1024


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


def requested_tasks(given: Sequence[str], tasks: list[str]) -> list[str] | None:
    """The ``tasks`` query parameter (comma-separated task names) checked against the export's, or
    None when absent. Given more than once (``?tasks=a&tasks=b``) it is refused, not reduced to one
    value: a client that meant the union would silently get fewer scores."""
    if not given:
        return None
    if len(given) > 1:
        raise RequestError(f"query parameter 'tasks' given {len(given)} times; give it once, comma-separated "
                           f"(tasks={clip(','.join(given))})", field="tasks", code="repeated_parameter")
    raw = given[0]
    names = [t.strip() for t in raw.split(",") if t.strip()]
    unknown = [t for t in names if t not in tasks]
    if not names or unknown:
        what = f"unknown task {quoted(unknown[0])}" if unknown else "no task named"
        raise RequestError(f"tasks: {what}; this export scores {', '.join(tasks)}", field="tasks", code="unknown_task")
    return list(dict.fromkeys(names))


def check_limits(feed: Feed, ranges: dict[str, NumericRange]) -> None:
    """422 naming the field and row of the first numeric value outside its usable range."""
    problem = feed_problem(feed, ranges)
    if problem is not None:
        name, row, message = problem
        raise RequestError(f"row {row}: field {name!r}: {message}", name, code="out_of_range")


def _only(outputs: Outputs, wanted: list[str] | None) -> Outputs:
    return outputs if wanted is None else {t: outputs[t] for t in wanted}


def create_app(predictor: Predictor, settings: ServeSettings = ServeSettings(),
               observers: Sequence[Observer] = (), metrics: Metrics | None = None) -> FastAPI:
    """The app; ``observers`` get one :class:`RequestRecord` per finished request (e.g. an access
    log); ``metrics``, if given, counts requests and micro-batches and answers ``GET /metrics``."""
    batcher = MicroBatcher(predictor.predict, settings.max_batch, settings.max_wait_ms,
                           on_batch=metrics.observe_batch if metrics else None)
    if metrics is not None:
        observers = [*observers, metrics.observe_request]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        yield
        await batcher.close()  # graceful: queued requests are scored before the process exits

    app = FastAPI(title="recsys_mtl serving", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.predictor = predictor
    app.state.batcher = batcher
    # errors become answers in the guard (outermost but for Starlette's own error layer)
    app.add_middleware(Guard, observers=observers)
    public = public_metadata(predictor.metadata)
    ranges = limits_from_json(predictor.metadata.get("limits"))  # checked when the export was loaded
    document = openapi_document(public, settings.max_request_rows)
    app.openapi = lambda: document  # type: ignore[method-assign]  # served at /openapi.json

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
            **public,
            "serving": {"variant": predictor.variant, "providers": predictor.providers, **asdict(settings),
                        "batching": asdict(batcher.stats)},
        }

    if metrics is not None:
        @app.get("/metrics")
        async def metrics_text() -> Response:
            return Response(metrics.render(), media_type=metrics.content_type)

    async def predict(request: Request) -> Response:
        kind = request.headers.get("content-type", JSON_TYPE).split(";")[0].strip().lower()
        if kind not in (JSON_TYPE, ARROW_TYPE):
            raise RequestError(f"unsupported Content-Type {clip(kind)!r}; use {JSON_TYPE} or {ARROW_TYPE}",
                               field="content-type", status=415, code="unsupported_media_type")
        body = await read_body(request, settings.max_body_bytes, settings.body_timeout_s)
        wanted = requested_tasks(request.query_params.getlist("tasks"), predictor.tasks)
        feed: Feed
        if kind == ARROW_TYPE:
            feed, rows = predictor.schema.from_arrow(read_stream(body, settings.max_body_bytes), settings.max_request_rows)
            check_limits(feed, ranges)
            outputs = await batcher.submit(feed, rows)
            return Response(arrow_outputs(_only(outputs, wanted)), media_type=ARROW_TYPE)
        parsed, check_text = parse_json(body)
        feed, rows = predictor.schema.from_json(parsed, settings.max_request_rows, check_text)
        del parsed, body  # the parsed tree can be large: not kept alive while the batch runs
        check_limits(feed, ranges)
        outputs = await batcher.submit(feed, rows)
        return Response(json_outputs(_only(outputs, wanted), rows), media_type=JSON_TYPE)

    # a plain Starlette route: the hot path skips FastAPI's per-call dependency and response-model
    # machinery (it parses and validates the body itself), about a third of the server's CPU per request
    app.add_route("/predict", predict, methods=["POST"])
    return app
