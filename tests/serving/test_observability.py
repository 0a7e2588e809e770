"""What the server tells its operators: the OpenAPI document built from the export's metadata (and
its row schema agrees with the server's own validation), Prometheus metrics, JSON access logs."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import pytest
from fastapi.testclient import TestClient

from serving.app import ServeSettings, create_app
from serving.telemetry import AccessLog, Metrics
from serving.predictor import Predictor
from tests.support.export import export_dir, good_row  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def served(export_dir: Path) -> Iterator[tuple[TestClient, logging.Logger]]:  # noqa: F811
    logger = logging.getLogger("test.serving.access")
    logger.setLevel(logging.INFO)
    app = create_app(Predictor(export_dir, intra_threads=1), ServeSettings(max_request_rows=20, max_wait_ms=0.5),
                     observers=[AccessLog(logger)], metrics=Metrics())
    with TestClient(app) as client:
        yield client, logger


def _bad(**change: Any) -> dict[str, Any]:
    return {**good_row(), **change}


BAD_ROWS = [
    {k: v for k, v in good_row().items() if k != "num2"},
    _bad(extra=1),
    _bad(num0="1.0"),
    _bad(num1=True),
    _bad(cat0=2.5),
    _bad(cat1=["a"]),
    _bad(tags="t1"),
    _bad(tags=[{"a": 1}]),
]


def test_openapi_row_schema_agrees_with_the_server(served: tuple[TestClient, logging.Logger]) -> None:
    client = served[0]
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.1") and "post" in doc["paths"]["/predict"]
    schemas = doc["components"]["schemas"]
    row = jsonschema.Draft202012Validator(schemas["Row"])
    body = doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    # the request body schema, its "#/components/..." references resolved inside the document
    whole = jsonschema.Draft202012Validator({**body, "components": doc["components"]})
    rows = [good_row(i) for i in range(3)]
    whole.validate(rows)
    whole.validate(rows[0])
    assert not whole.is_valid([]) and not whole.is_valid([rows[0]] * 21)
    answer = client.post("/predict", json=rows)
    assert answer.status_code == 200
    jsonschema.validate(answer.json(), schemas["Prediction"])
    for bad in BAD_ROWS:
        assert not row.is_valid(bad), bad
        assert client.post("/predict", json=bad).status_code == 422, bad
    assert body["oneOf"][1]["maxItems"] == 20
    assert '"/' not in json.dumps(doc["info"])  # no absolute paths


def test_metrics_count_requests_errors_and_batches(served: tuple[TestClient, logging.Logger]) -> None:
    client = served[0]
    before = _samples(client.get("/metrics").text)
    for i in range(3):
        assert client.post("/predict", json=good_row(i)).status_code == 200
    assert client.post("/predict", json=_bad(zzz=1)).status_code == 422
    assert client.post("/predict", content=b"[", headers={"content-type": "application/json"}).status_code == 400
    assert client.get("/wp-login.php").status_code == 404
    text = client.get("/metrics").text
    after = _samples(text)

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert delta('recsys_serving_requests_total{path="/predict",status="200"}') == 3
    assert delta('recsys_serving_errors_total{code="unknown_field"}') == 1
    assert delta('recsys_serving_errors_total{code="malformed_json"}') == 1
    assert delta('recsys_serving_requests_total{path="other",status="404"}') == 1  # a scanner's path is not a label
    assert delta('recsys_serving_request_seconds_count{path="/predict"}') == 5
    assert delta("recsys_serving_batch_rows_count") >= 1 and delta("recsys_serving_batch_rows_sum") == 3
    assert "wp-login" not in text


def test_access_log_is_one_json_object_per_request(served: tuple[TestClient, logging.Logger],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    client, logger = served
    with caplog.at_level(logging.INFO, logger=logger.name):
        client.post("/predict", json=good_row())
        client.post("/predict", json=_bad(num0="x"))
    entries = [json.loads(r.getMessage()) for r in caplog.records if r.name == logger.name]
    assert [(e["path"], e["status"]) for e in entries] == [("/predict", 200), ("/predict", 422)]
    assert entries[1]["error"] == "wrong_type" and "error" not in entries[0]
    assert all(e["ms"] >= 0 and e["method"] == "POST" and e["time"].endswith("Z") for e in entries)


def _samples(text: str) -> dict[str, float]:
    """Prometheus text exposition → {series: value}."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+|NaN|\+Inf)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out
