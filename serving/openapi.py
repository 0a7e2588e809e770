"""The OpenAPI 3.1 document of the service, generated from the export's ``metadata.json``.

``/predict`` validates requests itself (no per-request pydantic model: that cost a third of the
server's CPU), so FastAPI cannot describe it; this module writes the description from the same
metadata the validation uses. ``components.schemas.Row`` is a JSON Schema (2020-12, the dialect of
OpenAPI 3.1) of one request row: every input required, no other property, types as
:mod:`serving.schema` accepts them. A request's JSON body is a ``Row`` or an array of them.
"""

from __future__ import annotations

from typing import Any

from serving.contract import conditions_from_json, inputs_from_json

#: JSON Schema of one value per input kind (``null`` = missing everywhere)
_VALUE: dict[str, dict[str, Any]] = {
    "numeric": {"type": ["number", "null"], "description": "a finite number; null = missing (NaN / Infinity refused)"},
    "categorical": {"type": ["string", "integer", "null"], "description": "a category; an integer is read as its decimal string"},
    "sequence": {"type": ["array", "null"], "items": {"type": ["string", "integer", "null"]},
                 "description": "a list of categories; null = empty"},
    "timestamp": {"type": ["number", "null"], "description": "seconds since 1970-01-01 UTC; null = missing"},
    "vector": {"type": ["array", "null"], "items": {"type": "number"}, "description": "a vector of finite numbers; null = missing"},
}
_ERROR = {
    "type": "object",
    "required": ["error", "code"],
    "properties": {
        "error": {"type": "string", "description": "what is wrong (client text cut to 80 characters)"},
        "code": {"type": "string", "description": "machine-readable kind, e.g. wrong_type, unknown_field, body_too_large"},
        "field": {"type": "string", "description": "the input column, 'body' or the header at fault"},
    },
}


def row_schema(metadata: dict[str, Any]) -> dict[str, Any]:
    """JSON Schema of one request row for the export's inputs."""
    props = {}
    for i in inputs_from_json(metadata["inputs"]):
        prop = dict(_VALUE[i.kind])
        if i.kind == "vector":  # a fixed length; with a separator also one delimited string of numbers
            prop |= {"minItems": i.size, "maxItems": i.size, "description": f"{i.size} finite numbers; null = missing"}
            if i.separator is not None:
                prop["type"] = ["array", "string", "null"]
                prop["description"] += f"; or one string of them delimited by {i.separator!r}"
        elif i.separator is not None:  # a delimited string (or an integer, its decimal string) as well as a list
            prop["type"] = ["array", "string", "integer", "null"]
            prop["description"] = (f"a list of categories, or one string of them delimited by {i.separator!r} (items "
                                   "stripped of surrounding whitespace, empty ones dropped); null = empty")
        if i.kind == "sequence":
            prop["description"] += f"; items past {i.max_len} are ignored"
        props[i.name] = prop
    required = list(props)
    for c in conditions_from_json(metadata.get("conditions")):  # optional: the default when absent
        k = len(c.default)
        props[c.name] = {"type": ["array", "null"], "items": {"type": "number"}, "minItems": k, "maxItems": k,
                         "description": f"{k} numbers; default {list(c.default)}"}
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


def output_schema(metadata: dict[str, Any]) -> dict[str, Any]:
    """Schema of the JSON answer: one list per task, a value (or a class-probability list) per row."""
    tasks = {}
    for o in metadata["outputs"]:
        per_row: dict[str, Any] = {"type": "number"}
        if len(o.get("shape", [])) == 2:
            per_row = {"type": "array", "items": {"type": "number"}, "description": "class probabilities"}
        tasks[o["name"]] = {"type": "array", "items": per_row, "description": f"{o.get('task_type', '')} {o.get('meaning', '')}".strip()}
    return {
        "type": "object",
        "required": ["rows", "outputs"],
        "properties": {"rows": {"type": "integer"},
                       "outputs": {"type": "object", "properties": tasks, "required": list(tasks)}},
    }


def openapi_document(metadata: dict[str, Any], max_rows: int) -> dict[str, Any]:
    errors = {str(s): {"description": d, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
              for s, d in [(400, "malformed or empty body"), (408, "body too slow"), (413, "body or batch too large"),
                           (415, "unsupported content type"), (422, "missing / unknown / repeated field or wrong value"),
                           (500, "server bug (answered with Connection: close)"), (503, "shutting down")]}
    arrow = {"schema": {"type": "string", "format": "binary"},
             "description": "an Arrow IPC stream with one column per input (LZ4 / ZSTD compression accepted)"}
    names = "|".join(o["name"] for o in metadata["outputs"])  # task names are identifiers: no escaping
    predict = {
        "summary": "Score rows of raw input columns",
        "operationId": "predict",
        "parameters": [{"name": "tasks", "in": "query", "required": False,
                        "description": "comma-separated tasks to answer (default: all)",
                        "schema": {"type": "string", "pattern": f"^({names})(,({names}))*$"}}],
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": {"oneOf": [
                {"$ref": "#/components/schemas/Row"},
                {"type": "array", "items": {"$ref": "#/components/schemas/Row"}, "minItems": 1, "maxItems": max_rows},
            ]}},
            "application/vnd.apache.arrow.stream": arrow,
        }},
        "responses": {
            "200": {"description": "one output per task and row", "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Prediction"}},
                "application/vnd.apache.arrow.stream": {"schema": {"type": "string", "format": "binary"},
                                                        "description": "an Arrow IPC stream, one column per task"},
            }},
            **errors,
        },
    }

    def simple(summary: str) -> dict[str, Any]:
        return {"get": {"summary": summary, "responses": {"200": {"description": "OK",
                                                                  "content": {"application/json": {"schema": {"type": "object"}}}}}}}

    return {
        "openapi": "3.1.0",
        "info": {"title": f"recsys_mtl serving: {metadata.get('name', 'model')}", "version": str(metadata.get("spec_hash", "1")),
                 "description": f"model {metadata.get('model', '?')}, tasks {[o['name'] for o in metadata['outputs']]}"},
        "paths": {
            "/predict": {"post": predict},
            "/health": simple("liveness"),
            "/ready": simple("readiness: 200 once warmed up, 503 while starting or shutting down"),
            "/metadata": simple("the export's metadata and the serving settings"),
            "/metrics": {"get": {"summary": "Prometheus metrics (when prometheus_client is installed)",
                                 "responses": {"200": {"description": "text exposition format",
                                                       "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        },
        "components": {"schemas": {"Row": row_schema(metadata), "Prediction": output_schema(metadata), "Error": _ERROR}},
    }
