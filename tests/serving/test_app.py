"""The FastAPI app: scoring over JSON and Arrow, health endpoints, and every bad-request case."""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from serving.app import ARROW_TYPE, ServeSettings, create_app
from serving.predictor import Predictor
from tests.support.export import export_dir, good_row, separator_export_dir  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def client(export_dir: Path) -> Iterator[TestClient]:  # noqa: F811
    settings = ServeSettings(max_body_bytes=20_000, max_request_rows=50, max_batch=64, max_wait_ms=2)
    with TestClient(create_app(Predictor(export_dir), settings)) as c:
        yield c


def test_scores_one_and_many_rows_consistently(client: TestClient, export_dir: Path) -> None:  # noqa: F811
    one = client.post("/predict", json=good_row())
    assert one.status_code == 200
    many = client.post("/predict", json=[good_row(i) for i in range(5)]).json()
    assert many["rows"] == 5 and sorted(many["outputs"]) == ["task0", "task1"]
    assert one.json()["outputs"]["task0"][0] == pytest.approx(many["outputs"]["task0"][0], abs=1e-6)
    direct = Predictor(export_dir, warmup=False).predict_rows([good_row(i) for i in range(5)])
    np.testing.assert_allclose(many["outputs"]["task1"], direct["task1"], atol=1e-6)


def test_arrow_body_and_answer(client: TestClient) -> None:
    rows = [good_row(i) for i in range(4)]
    table = pa.Table.from_pylist(rows, schema=pa.schema([
        *[(k, pa.float64()) for k in ("num0", "num1", "num2", "num3", "num4", "num5")],
        *[(k, pa.string()) for k in ("cat0", "cat1", "cat2", "cat3", "cat4", "cat5")],
        ("tags", pa.list_(pa.string())),
    ]))
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    r = client.post("/predict", content=sink.getvalue(), headers={"content-type": ARROW_TYPE})
    assert r.status_code == 200 and r.headers["content-type"] == ARROW_TYPE
    out = pa.ipc.open_stream(r.content).read_all()
    expected = client.post("/predict", json=rows).json()["outputs"]
    np.testing.assert_allclose(out.column("task0").to_numpy(), expected["task0"], atol=1e-6)


def test_health_ready_metadata(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json() == {"ready": True}
    meta = client.get("/metadata").json()
    assert meta["tasks"] == ["task0", "task1"] and meta["serving"]["providers"] == ["CPUExecutionProvider"]


def _bad(**change: object) -> dict[str, object]:
    row = good_row()
    row.update(change)
    return row


@pytest.mark.parametrize(
    ("content", "status", "field", "text"),
    [
        (json.dumps({k: v for k, v in good_row().items() if k != "num3"}), 422, "num3", "missing field 'num3'"),
        (json.dumps(_bad(extra=1)), 422, "extra", "unknown field 'extra'"),
        (json.dumps(_bad(cat0=3.5)), 422, "cat0", "expected a string"),
        (json.dumps(_bad(num0="1.0")), 422, "num0", "expected a number"),
        (json.dumps(_bad(tags="t1")), 422, "tags", "expected a list"),
        (json.dumps(_bad(num0=float("nan"))), 422, "num0", "nan is not allowed"),  # a NaN token
        ("", 400, "body", "empty body"),
        ("[]", 400, "body", "no rows"),
        ('{"num0": 1,', 400, "body", "malformed JSON"),
        (json.dumps([good_row()] * 51), 413, "body", "51 rows exceeds the limit of 50"),
        (json.dumps([good_row()] * 49) + " " * 20_000, 413, "body", "exceeds the limit of 20000"),
    ],
)
def test_bad_requests_name_the_field(client: TestClient, content: str, status: int, field: str, text: str) -> None:
    r = client.post("/predict", content=content, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert text in r.json()["error"]
    assert r.json().get("field") == field
    assert client.post("/predict", json=good_row()).status_code == 200  # still serving


def test_unsupported_content_type_and_bad_arrow(client: TestClient) -> None:
    r = client.post("/predict", content=b"a,b", headers={"content-type": "text/csv"})
    assert r.status_code == 415
    r = client.post("/predict", content=b"not arrow", headers={"content-type": ARROW_TYPE})
    assert r.status_code == 400 and "Arrow" in r.json()["error"]


def test_good_request_unaffected_by_concurrent_bad_ones(client: TestClient) -> None:
    expected = client.post("/predict", json=good_row()).json()

    def send(i: int) -> tuple[int, dict[str, object]]:
        body = good_row() if i % 2 == 0 else _bad(num0="oops")
        r = client.post("/predict", json=body)
        return r.status_code, r.json()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(send, range(40)))
    for i, (status, body) in enumerate(results):
        if i % 2 == 0:
            assert status == 200 and body["outputs"]["task0"][0] == pytest.approx(expected["outputs"]["task0"][0], abs=1e-6)
        else:
            assert status == 422 and body["field"] == "num0"


def test_tasks_query_answers_only_those_tasks(client: TestClient) -> None:
    rows = [good_row(i) for i in range(3)]
    full = client.post("/predict", json=rows).json()["outputs"]
    only = client.post("/predict?tasks=task1", json=rows)
    assert only.status_code == 200 and only.json() == {"rows": 3, "outputs": {"task1": full["task1"]}}
    arrow = client.post("/predict?tasks=task0", content=_arrow_body(rows), headers={"content-type": ARROW_TYPE})
    table = pa.ipc.open_stream(arrow.content).read_all()
    assert table.column_names == ["task0"] and table.column("task0").to_pylist() == pytest.approx(full["task0"])
    for bad in ("nope", "", "task0,x" * 3000):
        r = client.post(f"/predict?tasks={bad}", json=rows)
        assert r.status_code == 422 and r.json()["field"] == "tasks" and len(r.content) < 2000
    assert client.post("/predict", json=rows).status_code == 200  # still serving


def _arrow_body(rows: list[dict]) -> bytes:  # type: ignore[type-arg]
    sink = io.BytesIO()
    table = pa.Table.from_pylist(rows)
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue()


def test_delimited_sequence_takes_a_string_or_a_list(separator_export_dir: Path) -> None:  # noqa: F811
    settings = ServeSettings(max_body_bytes=20_000, max_request_rows=50, max_batch=64, max_wait_ms=2)
    tags = [["t1", "t7"], ["t3", "t2", "t9", "t4"], [], None, ["t5"]]
    texts = ["t1|t7", " t3 | t2|t9 ||t4 ", "", None, "t5"]
    with TestClient(create_app(Predictor(separator_export_dir), settings)) as c:
        by_list = c.post("/predict", json=[{**good_row(), "tags": t} for t in tags])
        by_text = c.post("/predict", json=[{**good_row(), "tags": t} for t in texts])
        assert by_list.status_code == by_text.status_code == 200
        assert by_text.json()["outputs"] == by_list.json()["outputs"]
        scores = by_text.json()["outputs"]["task0"]
        assert scores[2] == scores[3] != scores[0]  # "" and null are the empty sequence
        bad = c.post("/predict", json={**good_row(), "tags": 2.5})
        assert bad.status_code == 422 and bad.json()["field"] == "tags" and "delimited by '|'" in bad.json()["error"]
        row = c.get("/openapi.json").json()["components"]["schemas"]["Row"]
        assert "string" in row["properties"]["tags"]["type"]


def test_an_export_without_separator_takes_lists_only(client: TestClient) -> None:
    meta = client.get("/metadata").json()
    assert "separator" not in next(i for i in meta["inputs"] if i["name"] == "tags")
    r = client.post("/predict", json={**good_row(), "tags": "t1|t7"})
    assert r.status_code == 422 and r.json()["field"] == "tags" and "expected a list (or null)" in r.json()["error"]
