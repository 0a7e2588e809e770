"""The ``expression``, ``timestamp`` and ``dense`` kinds beyond the contract table
(tests/features/test_feature_kinds.py): the expression language's missing-value rules on both sides, time
zones and Arrow timestamp / date inputs, vectors as text and fixed-size lists, and their server inputs."""

from __future__ import annotations

import json
import math
from datetime import date, datetime, timezone
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import polars as pl
import pytest
from onnx import TensorProto, helper

from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.errors import DataError, SpecError
from recsys_mtl.export.preprocess_graph import build_preprocess_graph, raw_inputs
from recsys_mtl.export.raw import raw_feed
from recsys_mtl.features.graph import GraphBuilder
from recsys_mtl.features.safe_expression import columns, parse, to_onnx, to_polars
from recsys_mtl.spec.features import FeatureSpec
from recsys_mtl.spec.loading import validate
from serving.contract import ContractError, InputSpec, inputs_from_json, inputs_to_json
from serving.openapi import row_schema
from serving.schema import RequestError, Schema

NAN = math.nan
A = [4.0, 0.0, -1.0, None, 2.0, None]
B = [2.0, 0.0, 0.0, 1.0, None, None]


def _both(text: str) -> tuple[list[float | None], list[float | None]]:
    """(polars, ONNX) values of ``text`` over columns a, b (None = missing)."""
    node = parse(text)
    got = pl.DataFrame({"a": A, "b": B}, schema={"a": pl.Float64, "b": pl.Float64}).select(to_polars(node)).to_series().to_list()
    bld = GraphBuilder()
    out = to_onnx(node, bld, "e")
    bld.nodes.append(helper.make_node("Identity", [out], ["y"]))
    ins = [helper.make_tensor_value_info(c, TensorProto.DOUBLE, ["n"]) for c in ("a", "b")]
    graph = helper.make_graph(bld.nodes, "g", ins, [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["n"])],
                              bld.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    feed = {c: np.array([NAN if v is None else v for v in vals]) for c, vals in (("a", A), ("b", B))}
    y = ort.InferenceSession(model.SerializeToString()).run(None, feed)[0]
    return got, [None if math.isnan(v) else float(v) for v in y]


@pytest.mark.parametrize(("text", "want"), [
    ("a / b", [2.0, None, None, None, None, None]),  # division by zero → missing
    ("log(a)", [math.log(4.0), None, None, None, math.log(2.0), None]),  # log of 0 / negative → missing
    ("sqrt(a) + 1", [3.0, 1.0, None, None, math.sqrt(2.0) + 1, None]),
    ("least(a, b)", [2.0, 0.0, -1.0, None, None, None]),  # a missing argument → missing (not skipped)
    ("greatest(a, b, 0.5)", [4.0, 0.5, 0.5, None, None, None]),
    ("coalesce(a, b, -7)", [4.0, 0.0, -1.0, 1.0, 2.0, -7.0]),
    ("a > b", [1.0, 0.0, 0.0, None, None, None]),
    ("a <> b", [1.0, 0.0, 1.0, None, None, None]),
    ("a > 0 AND b > 0", [1.0, 0.0, 0.0, None, None, None]),  # SQL: false AND missing = false
    ("a < 0 AND b = 0", [0.0, 0.0, 1.0, 0.0, 0.0, None]),
    ("a > 1 OR b > 0", [1.0, 0.0, 0.0, 1.0, 1.0, None]),  # true OR missing = true
    ("NOT a > 0", [0.0, 1.0, 1.0, None, 0.0, None]),
    ("CASE WHEN a > 0 THEN a WHEN b = 0 THEN -b - 1 END", [4.0, -1.0, -1.0, None, 2.0, None]),
    ("CASE WHEN a > 1 THEN 1 ELSE 2 END", [1.0, 2.0, 2.0, 2.0, 1.0, 2.0]),  # a missing condition is not true
    ("-a * 2 + abs(b) - exp(b * 1000)", [None, -1.0, 1.0, None, None, None]),  # exp overflow → missing
])
def test_expression_missing_rules_agree_between_polars_and_onnx(text: str, want: list[float | None]) -> None:
    got, onnx_got = _both(text)
    assert got == pytest.approx(want) and onnx_got == pytest.approx(want), (got, onnx_got)


@pytest.mark.parametrize(("text", "says"), [
    ("x ^ 2", "operator '^'"), ("x % 2", "operator '%'"), ("sin(x)", "function 'sin'"), ("x || y", "operator '||'"),
    ("x = 'a'", "operator \"'\""), ("(x + 1", "expected ')'"), ("least(x)", "at least 2"), ("1 + 2", "reads no column"),
])
def test_an_unsupported_expression_is_refused_naming_the_operator(text: str, says: str) -> None:
    raw = {"name": "s", "features": [{"kind": "expression", "name": "e", "expression": text}],
           "tasks": [{"name": "y", "label": "y"}]}
    with pytest.raises(SpecError) as err:
        validate(FeatureSpec, raw, "spec.yaml")
    assert "features[0]" in str(err.value) and "expression" in str(err.value) and says in str(err.value), str(err.value)


def test_expression_columns_and_quoted_names() -> None:
    assert columns(parse('"unit price" * qty / max(qty, 1) + a.b')) == ["unit price", "qty", "a.b"]


def _served(spec: FeatureSpec, df: pl.DataFrame) -> tuple[Preprocessor, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(fitted preprocessor, polars columns, ONNX outputs on the server's Arrow feed) for ``df``."""
    pre = Preprocessor.fit(spec, df)
    expected = {k: v.numpy() for k, v in pre.transform(df).columns().items()}
    session = ort.InferenceSession(build_preprocess_graph(pre, 20).SerializeToString())
    names = [o.name for o in session.get_outputs()]
    return pre, expected, dict(zip(names, session.run(None, raw_feed(raw_inputs(pre), df))))


def _spec(*features: dict[str, Any]) -> FeatureSpec:
    return FeatureSpec.model_validate({"name": "s", "features": list(features), "tasks": [{"name": "y", "label": "y"}]})


def test_timestamp_time_zones_and_arrow_timestamps() -> None:
    # one instant written four ways (aware Paris, naive UTC in ms, epoch seconds) and a date
    instants = [datetime(2024, 1, 1, 8, 0, tzinfo=timezone.utc), datetime(2024, 3, 4, 18, 30, tzinfo=timezone.utc),
                None, datetime(1969, 12, 31, 23, 0, tzinfo=timezone.utc), datetime(2024, 7, 14, 0, 0, tzinfo=timezone.utc)]
    epoch = [None if t is None else t.timestamp() for t in instants]
    df = pl.DataFrame({
        "paris": pl.Series([t for t in instants], dtype=pl.Datetime("us", "UTC")).dt.convert_time_zone("Europe/Paris"),
        "naive": pl.Series([None if t is None else t.replace(tzinfo=None) for t in instants], dtype=pl.Datetime("ms")),
        "epoch": epoch,
        "day": [date(2024, 1, 1), date(2024, 1, 2), None, date(2024, 1, 3), date(2024, 1, 4)],
        "y": [0, 1, 0, 1, 0],
    })
    feats = [{"kind": "timestamp", "name": c, "reference": "day" if c == "epoch" else None, "elapsed_unit": "days"}
             for c in ("paris", "naive", "epoch")]
    pre, expected, onnx_out = _served(_spec(*feats), df)
    lay = pre.layout
    num = expected["numeric"]
    col = {name: num[:, i] for i, name in enumerate(lay.numeric)}
    for c in ("naive", "epoch"):  # the same instants, however written
        for o in ("hour_sin", "hour_cos", "weekday_sin", "weekday_cos"):
            assert col[f"{c}.{o}"] == pytest.approx(col[f"paris.{o}"], abs=1e-6), (c, o)
    # 08:00 UTC (09:00 in Paris): a third of the day; 2024-01-01 is a Monday
    assert col["paris.hour_sin"][0] == pytest.approx(math.sin(2 * math.pi / 3), abs=1e-6)
    assert col["paris.weekday_sin"][0] == pytest.approx(math.sin(2 * math.pi * 8 / (24 * 7)), abs=1e-6)
    assert col["paris.hour_sin"][2] == 0.0 and col["paris.hour_cos"][2] == 0.0  # missing → centre, flagged
    assert num[2, len(lay.numeric) + lay.indicators.index("paris.hour_sin")] == 1.0
    assert np.abs(onnx_out["numeric"] - num).max() <= 1e-6


def test_timestamp_json_takes_epoch_seconds_and_refuses_text() -> None:
    inputs = [InputSpec("t", "t", "timestamp")]
    feed, _ = Schema.for_inputs(inputs).from_json([{"t": 1.7e9}, {"t": None}], max_rows=2)
    assert feed["t"][0] == 1.7e9 and math.isnan(feed["t"][1])
    with pytest.raises(RequestError) as err:
        Schema.for_inputs(inputs).from_json([{"t": 1.0}, {"t": "2024-01-01"}], max_rows=2)
    assert "row 1" in err.value.message and "'t'" in err.value.message


VECS = [[3.0, 4.0, 0.0], None, [0.0, 0.0, 0.0], [-1.0, 2.0, 2.0]]


@pytest.mark.parametrize("form", ["list", "array", "text"])
def test_dense_list_array_and_text_agree(form: str) -> None:
    column = {
        "list": pl.Series(VECS, dtype=pl.List(pl.Float64)),
        "array": pl.Series(VECS, dtype=pl.Array(pl.Float32, 3)),
        "text": pl.Series([None if v is None else " | ".join(str(x) for x in v) for v in VECS]),
    }[form]
    df = pl.DataFrame({"v": column, "y": [0, 1, 0, 1]})
    f = {"kind": "dense", "name": "v", "size": 3, "normalize": True, **({"separator": "|"} if form == "text" else {})}
    pre, expected, onnx_out = _served(_spec(f), df)
    num = expected["numeric"]
    assert num[0, :3] == pytest.approx([0.6, 0.8, 0.0]) and num[3, :3] == pytest.approx([-1 / 3, 2 / 3, 2 / 3])
    assert num[1].tolist() == [0.0, 0.0, 0.0, 1.0] and num[2].tolist() == [0.0, 0.0, 0.0, 0.0]  # missing: zeros + flag
    assert np.abs(onnx_out["numeric"] - num).max() <= 1e-6
    rows = df.select("v").to_dicts()
    json_feed, _ = Schema.for_inputs(raw_inputs(pre)).from_json(rows, max_rows=4)
    session = ort.InferenceSession(build_preprocess_graph(pre, 20).SerializeToString())
    assert np.abs(session.run(None, json_feed)[0] - num).max() <= 1e-6


def test_dense_bad_rows_name_feature_and_row() -> None:
    spec = _spec({"kind": "dense", "name": "v", "size": 2, "separator": ","})
    pre = Preprocessor.fit(spec, pl.DataFrame({"v": ["1,2", "3, 4", None], "y": [0, 1, 0]}))
    for bad, says in ((["1,2", "1,x"], "row 1"), (["1,2,3"], "row 0 has a vector of length 3")):
        with pytest.raises(DataError) as err:
            pre.transform(pl.DataFrame({"v": bad, "y": [0] * len(bad)}))
        assert "dense feature 'v'" in str(err.value) and says in str(err.value), str(err.value)
    with pytest.raises(DataError, match="set 'separator'"):
        Preprocessor.fit(_spec({"kind": "dense", "name": "v", "size": 2}), pl.DataFrame({"v": ["1,2"], "y": [0]}))
    schema = Schema.for_inputs(raw_inputs(pre))
    for bad in ([1.0], [1.0, None], "1,2,3", [1.0, math.inf]):
        with pytest.raises(RequestError) as rerr:
            schema.from_json([{"v": [1.0, 2.0]}, {"v": bad}], max_rows=2)
        assert "row 1" in rerr.value.message and "'v'" in rerr.value.message, rerr.value.message
    import pyarrow as pa
    with pytest.raises(RequestError) as aerr:
        schema.from_arrow(pa.table({"v": pa.array([[1.0, 2.0], [1.0]])}), max_rows=2)
    assert "row 1" in aerr.value.message and "'v'" in aerr.value.message


def test_vector_and_timestamp_inputs_round_trip_the_contract() -> None:
    inputs = [InputSpec("v", "v", "vector", separator="|", size=8), InputSpec("t", "t", "timestamp")]
    written = json.loads(json.dumps(inputs_to_json(inputs)))
    assert written[0]["shape"] == ["batch", 8] and written[1]["dtype"] == "float64"
    assert inputs_from_json(written) == inputs
    with pytest.raises(ContractError, match="'size' must be a positive integer"):
        inputs_from_json([{**written[0], "size": 0, "shape": ["batch", 0]}])
    with pytest.raises(ContractError, match="'size' applies to vector inputs only"):
        inputs_from_json([{**written[1], "size": 3}])
    props = row_schema({"inputs": written})["properties"]
    assert props["v"]["minItems"] == props["v"]["maxItems"] == 8 and "string" in props["v"]["type"]
    assert Schema.for_inputs(inputs).blank(2)["v"].shape == (2, 8)


def test_the_graph_takes_a_vector_input_of_the_declared_width() -> None:
    pre = Preprocessor.fit(_spec({"kind": "dense", "name": "v", "size": 2}),
                           pl.DataFrame({"v": [[1.0, 2.0], [3.0, 4.0]], "y": [0, 1]}))
    model = build_preprocess_graph(pre, 20)
    onnx.checker.check_model(model)
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 2]


def _with_new_kinds(df: pl.DataFrame, seed: int) -> pl.DataFrame:
    """Synthetic rows plus what the three kinds read: prices / quantities (zeros included), an aware
    event time and a request time, and a 4-dimensional embedding (some missing)."""
    rng = np.random.default_rng(seed)
    n = df.height
    event = pl.Series(rng.integers(1_700_000_000_000_000, 1_735_000_000_000_000, n)).cast(pl.Datetime("us", "UTC"))
    return df.with_columns(
        price=pl.Series([None if rng.random() < 0.1 else float(v) for v in rng.gamma(2.0, 10.0, n)]),
        qty=pl.Series([float(v) for v in rng.integers(0, 4, n)]),
        event=event.dt.convert_time_zone("America/New_York"),
        request=event + pl.Series(rng.integers(-10**10, 10**11, n)).cast(pl.Duration("us")),
        emb=pl.Series([None if rng.random() < 0.1 else [float(x) for x in rng.normal(0, 1, 4)] for _ in range(n)],
                      dtype=pl.List(pl.Float64)),
    )


@pytest.mark.slow
def test_the_new_kinds_export_and_serve_json_and_arrow_alike(tmp_path: Any) -> None:
    """An untrained mmoe with the three kinds exports (its parity check passes on held-out rows) and the
    torch-free server scores JSON rows (epoch seconds, lists) as it scores the same rows as Arrow
    (timestamps with a zone, list columns); the tree matrix has a column per emitted number."""
    from recsys_mtl.baselines.tabular import TreeColumns
    from recsys_mtl.data.synthetic import SyntheticConfig, generate
    from recsys_mtl.export import export_run
    from serving.predictor import Predictor
    from tests.support.synthetic import synthetic_spec
    from tests.support.export import make_run

    raw = synthetic_spec(2).model_dump(mode="json", exclude_defaults=True)
    raw["features"] = raw["features"][:2] + raw["features"][6:8] + [
        {"kind": "expression", "name": "unit_price", "expression": "CASE WHEN qty > 0 THEN price / qty END", "log1p": True},
        {"kind": "timestamp", "name": "event", "reference": "request", "elapsed_unit": "days"},
        {"kind": "dense", "name": "emb", "size": 4, "normalize": True},
    ]
    spec = FeatureSpec.model_validate(raw)
    train = _with_new_kinds(generate(SyntheticConfig(rows=400, num_tasks=2, seed=1)), 1)
    test = _with_new_kinds(generate(SyntheticConfig(rows=60, num_tasks=2, seed=2)), 2)
    run = make_run(tmp_path, spec, train)
    export_run(run, tmp_path / "export", test=test)
    meta = json.loads((tmp_path / "export" / "metadata.json").read_text())
    kinds = {i["name"]: (i["kind"], i["shape"]) for i in meta["inputs"]}
    assert kinds["event"] == ("timestamp", ["batch"]) and kinds["request"] == ("timestamp", ["batch"])
    assert kinds["emb"] == ("vector", ["batch", 4]) and kinds["price"][0] == kinds["qty"][0] == "numeric"
    predictor = Predictor(tmp_path / "export")
    cols = [i["name"] for i in meta["inputs"]]
    by_arrow = predictor.predict_table(test.select(cols).to_arrow())
    rows = test.select(cols).with_columns(pl.col("event", "request").dt.epoch("us") / 1e6).to_dicts()
    by_json = predictor.predict_rows(rows)
    for task, scores in by_arrow.items():
        assert np.abs(scores - by_json[task]).max() <= 1e-6, task
    names = TreeColumns.of(Preprocessor.load(run / "preprocessing.json", spec).layout).names
    assert {"unit_price", "event.hour_sin", "event.elapsed", "emb.0", "emb.3", "emb__missing"} <= set(names)


def test_reference_documents_the_three_kinds_with_valid_examples() -> None:
    """docs/reference.md's feature-kind section has a YAML example of each (validated, with the others,
    by tests/features/test_feature_kinds.py)."""
    import re
    from pathlib import Path

    import yaml

    text = (Path(__file__).resolve().parents[2] / "docs" / "reference.md").read_text()
    section = text[text.index("## Feature kinds"):]
    section = section[: section.index("\n## ", 3)]
    kinds = {f["kind"] for block in re.findall(r"```yaml\n(.*?)```", section, flags=re.S) for f in yaml.safe_load(block)}
    assert {"expression", "timestamp", "dense", "cooccurrence"} <= kinds


def test_streamed_fit_of_zoned_timestamps_array_vectors_and_text_numbers(tmp_path: Any) -> None:
    """Parquet keeps a zoned datetime and a fixed-size list: the streamed fit equals the in-memory one,
    and an expression reads numbers stored as text as a numeric feature does."""
    rng = np.random.default_rng(3)
    n = 300
    df = pl.DataFrame({
        "t": pl.Series(rng.integers(1.6e15, 1.7e15, n)).cast(pl.Datetime("us", "UTC")).dt.convert_time_zone("Asia/Tokyo"),
        "v": pl.Series([None if k % 9 == 0 else rng.normal(size=3).tolist() for k in range(n)], dtype=pl.Array(pl.Float64, 3)),
        "a": [None if k % 7 == 0 else str(round(float(x), 3)) for k, x in enumerate(rng.normal(size=n))],
        "y": rng.integers(0, 2, n),
    })
    spec = _spec({"kind": "timestamp", "name": "t"}, {"kind": "dense", "name": "v", "size": 3, "standardize": True},
                 {"kind": "expression", "name": "e", "expression": "a * 2 - 1", "quantile_buckets": 4})
    files = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    df[:100].write_parquet(files[0])
    df[100:].write_parquet(files[1])
    streamed, memory = Preprocessor.fit_files(spec, files).state(), Preprocessor.fit(spec, df).state()
    assert streamed["numeric"].keys() == memory["numeric"].keys()
    for name, fit in memory["numeric"].items():
        for key, value in fit.items():
            same = value if isinstance(value, (str, bool)) or value is None else pytest.approx(value, rel=1e-9, abs=1e-12)
            assert streamed["numeric"][name][key] == same, (name, key)
    _, expected, onnx_out = _served(spec, df)
    for name, got in onnx_out.items():
        assert np.abs(got.astype(np.float64) - expected[name].astype(np.float64)).max() <= 1e-6, name
    with pytest.raises(DataError, match="expression feature 'e'.*non-numeric value 'x'"):
        Preprocessor.fit(spec, df.with_columns(pl.lit("x").alias("a")))
