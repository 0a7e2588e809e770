"""The feature-kind contract, one row per kind: adding a kind is its module plus one row here.

Every row runs through: spec validation errors naming the field; the streamed fit (Parquet files)
equal to the in-memory fit; polars transform = ONNX preprocessing graph = the server's Arrow and JSON
input paths (max abs difference <= 1e-6) on random data with nulls; and a bad value refused naming
the row and the column (server, 4xx) or the feature and row (training).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnxruntime as ort
import polars as pl
import pytest

from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.errors import DataError, SpecError
from recsys_mtl.export.preprocess_graph import build_preprocess_graph, raw_inputs
from recsys_mtl.export.raw import raw_feed
from recsys_mtl.features.registry import kinds
from recsys_mtl.spec.features import FeatureSpec
from recsys_mtl.spec.loading import validate
from serving.schema import RequestError, Schema

N = 240
ITEMS = [f"i{k}" for k in range(12)]
CATS = [f"c{k}" for k in range(3)]


def _maybe(rng: np.random.Generator, value: Any, p_null: float = 0.1) -> Any:
    return None if rng.random() < p_null else value


def _history(rng: np.random.Generator, pool: list[str], longest: int = 9) -> list[str | None] | None:
    if rng.random() < 0.08:
        return None
    return [_maybe(rng, pool[j], 0.05) for j in rng.integers(0, len(pool), rng.integers(0, longest + 1))]


def _frame(rng: np.random.Generator) -> pl.DataFrame:
    """Every column any row reads: ids, numbers, histories (some longer than the windows), with nulls."""
    return pl.DataFrame({
        "item": [_maybe(rng, ITEMS[k]) for k in rng.integers(0, len(ITEMS), N)],
        "user": [_maybe(rng, f"u{k}") for k in rng.integers(0, 40, N)],
        "city": [_maybe(rng, f"t{k}") for k in rng.integers(0, 5, N)],
        "x": [_maybe(rng, float(v)) for v in rng.normal(0, 3, N)],
        "hist": [_history(rng, ITEMS) for _ in range(N)],
        "cat": [_maybe(rng, CATS[k]) for k in rng.integers(0, len(CATS), N)],
        "hcat": [_history(rng, CATS) for _ in range(N)],
        "y": rng.integers(0, 2, N),
        # numbers with zeros and negatives (division by zero, log of non-positive values)
        "x2": [_maybe(rng, float(v)) for v in rng.choice([0.0, -1.5, 0.5, 2.0, 7.25, 100.0], N)],
        # epoch seconds around 2024, and a reference up to ±30 days away
        "ts": [_maybe(rng, float(v)) for v in rng.uniform(1.70e9, 1.74e9, N)],
        "ref": [_maybe(rng, float(v)) for v in rng.uniform(1.70e9, 1.74e9, N) + rng.normal(0, 3e5, N)],
        "vec": [_maybe(rng, [float(x) for x in rng.normal(0, 1, 4)]) for _ in range(N)],
    }, schema_overrides={"hist": pl.List(pl.String), "hcat": pl.List(pl.String), "vec": pl.List(pl.Float64)})


@dataclass(frozen=True)
class KindCase:
    kind: str
    #: the features of the spec under test (the kind's feature first)
    features: list[dict[str, Any]]
    #: a spec mistake in the kind's feature: (change to features[0], text the error must contain)
    bad_spec: tuple[dict[str, Any], str]
    #: a request value the server refuses: (column, value)
    bad_request: tuple[str, Any]
    #: a training frame change making the transform / fit refuse it, with the texts the error must hold
    bad_frame: Callable[[pl.DataFrame], pl.DataFrame] | None = None
    bad_frame_says: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    #: its fit / transform / graph checks take tens of seconds (marked slow: left out of the quick tier)
    slow: bool = False


def _set(df: pl.DataFrame, column: str, row: int, value: Any) -> pl.DataFrame:
    values = df[column].to_list()
    values[row] = value
    return df.with_columns(pl.Series(column, values, dtype=pl.Float64 if isinstance(value, float) else None))


#: every operator family of the expression kind, with division by zero and logs of non-positive values
EXPRESSION = ("CASE WHEN x2 > 0 AND NOT x < -2 THEN log(x2) / x WHEN x2 = 0 OR x > 3 THEN least(x, x2, 1) "
              "ELSE greatest(abs(x), x2) - sqrt(x) END + coalesce(x2 / x, exp(x) * 2) - (x >= 1) + log1p(x2 <> 7.25)")

CASES = [
    KindCase("categorical", [{"kind": "categorical", "name": "item", "embedding_dim": 4}],
             ({"embedding_dim": 0}, "embedding_dim"), ("item", {"a": 1})),
    KindCase("numeric", [{"kind": "numeric", "name": "x", "log1p": True, "clip": {"min": -5}}],
             ({"clip": {"min": 2, "max": 1}}, "clip"), ("x", "abc"),
             lambda df: _set(df, "x", 7, math.inf), ("numeric feature 'x'", "row 7")),
    KindCase("sequence", [{"kind": "sequence", "name": "hist", "max_len": 5}],
             ({"max_len": 0}, "max_len"), ("hist", 3.5)),
    KindCase("match", [{"kind": "match", "name": "m", "candidate": "item", "history": "hist", "max_len": 6,
                        "candidate_category": "cat", "history_category": "hcat"},
                       {"kind": "categorical", "name": "item"}, {"kind": "sequence", "name": "hist", "max_len": 4}],
             ({"candidate_category": None}, "history_category"), ("hist", {"x": 1}),
             lambda df: df.with_columns(pl.col("hcat").list.join(",").alias("hcat")), ("match feature 'm'", "'hcat'")),
    # top_items below the 12 items: rarer items are unknown (similarity 0) in the fit and the graph
    KindCase("cooccurrence", [{"kind": "cooccurrence", "name": "co", "candidate": "item", "history": "hist", "max_len": 6,
                               "top_items": 8},
                              {"kind": "categorical", "name": "item"},
                              # every output, kernel pooling included, on its own history column window
                              {"kind": "cooccurrence", "name": "cok", "candidate": "item", "history": "hist", "max_len": 4,
                               "top_items": 12, "outputs": ["kernels", "mean", "max", "weighted"],
                               "kernels": {"mu": [0.0, 0.3, 0.7, 1.0], "sigma": 0.15}}],
             ({"top_items": 0}, "top_items"), ("hist", {"x": 1}),
             lambda df: df.with_columns(pl.col("hist").list.join(",").alias("hist")), ("cooccurrence feature 'co'", "'hist'")),
    KindCase("cross", [{"kind": "cross", "name": "uc", "columns": ["user", "city"], "hash": {"buckets": 50, "seed": 3}},
                       {"kind": "categorical", "name": "user"}],
             ({"columns": ["user"]}, "columns"), ("city", [1])),
    KindCase("expression", [{"kind": "expression", "name": "r", "expression": EXPRESSION}],
             ({"expression": "x % 2"}, "'%'"), ("x2", "abc"),
             lambda df: _set(df, "x2", 7, math.inf), ("expression feature 'r'", "row 7")),
    KindCase("timestamp", [{"kind": "timestamp", "name": "ts", "reference": "ref", "elapsed_unit": "days"}],
             ({"cyclical": ["minute"]}, "cyclical"), ("ref", "yesterday"),
             lambda df: df.with_columns(pl.col("ts").cast(pl.String)), ("timestamp feature 'ts'", "'ts'")),
    KindCase("dense", [{"kind": "dense", "name": "vec", "size": 4, "normalize": True, "standardize": True}],
             ({"size": 0}, "size"), ("vec", [1.0, 2.0]),
             lambda df: df.with_columns(pl.Series("vec", [[1.0, 2.0, 3.0] if r == 7 else v for r, v in enumerate(df["vec"].to_list())])),
             ("dense feature 'vec'", "row 7")),
]


#: CASES as parameters, the slow rows marked; for the checks that fit, transform or build graphs
HEAVY_PARAMS = [pytest.param(c, id=c.kind, marks=[pytest.mark.slow] if c.slow else []) for c in CASES]


def test_every_registered_kind_has_a_row() -> None:
    assert sorted(c.kind for c in CASES) == sorted(k.name for k in kinds())


def _spec(case: KindCase) -> FeatureSpec:
    return FeatureSpec.model_validate({"name": f"kind_{case.kind}", "features": case.features,
                                       "tasks": [{"name": "y", "label": "y"}]})


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return _frame(np.random.default_rng(0))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.kind)
def test_spec_errors_name_the_field(case: KindCase) -> None:
    change, says = case.bad_spec
    raw = {"name": "s", "features": [{**case.features[0], **change}, *case.features[1:]], "tasks": [{"name": "y", "label": "y"}]}
    raw["features"][0] = {k: v for k, v in raw["features"][0].items() if v is not None}
    with pytest.raises(SpecError) as err:
        validate(FeatureSpec, raw, "spec.yaml")
    assert "spec.yaml" in str(err.value) and "features[0]" in str(err.value) and says in str(err.value), str(err.value)


@pytest.mark.parametrize("case", HEAVY_PARAMS)
def test_streamed_fit_equals_in_memory_fit(case: KindCase, frame: pl.DataFrame, tmp_path: Path) -> None:
    spec = _spec(case)
    files = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    frame[: N // 3].write_parquet(files[0])
    frame[N // 3 :].write_parquet(files[1])
    streamed, memory = Preprocessor.fit_files(spec, files).state(), Preprocessor.fit(spec, frame).state()
    assert streamed["tables"] == memory["tables"]
    assert streamed.get("pairs") == memory.get("pairs")
    assert streamed["numeric"].keys() == memory["numeric"].keys()
    for name, fit in memory["numeric"].items():
        for key, value in fit.items():
            same = value if isinstance(value, (str, bool)) or value is None else pytest.approx(value, rel=1e-9, abs=1e-12)
            assert streamed["numeric"][name][key] == same, (name, key)


@pytest.mark.parametrize("case", HEAVY_PARAMS)
def test_polars_onnx_and_server_paths_agree(case: KindCase, frame: pl.DataFrame) -> None:
    spec = _spec(case)
    pre = Preprocessor.fit(spec, frame[: N // 2])
    test = frame[N // 2 :]
    expected = pre.transform(test).columns()
    inputs = raw_inputs(pre)
    session = ort.InferenceSession(build_preprocess_graph(pre, 20).SerializeToString())
    names = [o.name for o in session.get_outputs()]
    assert set(names) <= set(expected)
    arrow = raw_feed(inputs, test)
    rows = test.select([i.name for i in inputs]).to_dicts()
    json_feed, _ = Schema.for_inputs(inputs).from_json(rows, max_rows=len(rows))
    for feed in (arrow, json_feed):
        for name, got in zip(names, session.run(None, feed)):
            want = expected[name].numpy()
            assert got.shape == want.shape, name
            assert np.abs(got.astype(np.float64) - want.astype(np.float64)).max(initial=0.0) <= 1e-6, name


@pytest.mark.parametrize("case", HEAVY_PARAMS)
def test_a_bad_value_is_refused_naming_row_and_column(case: KindCase, frame: pl.DataFrame) -> None:
    spec = _spec(case)
    pre = Preprocessor.fit(spec, frame)
    inputs = raw_inputs(pre)
    rows = frame.head(5).select([i.name for i in inputs]).to_dicts()
    column, value = case.bad_request
    rows[3][column] = value
    with pytest.raises(RequestError) as err:
        Schema.for_inputs(inputs).from_json(rows, max_rows=10)
    assert err.value.status // 100 == 4 and "row 3" in str(err.value.message) and column in str(err.value.message)
    if case.bad_frame is not None:
        with pytest.raises(DataError) as derr:
            pre.transform(case.bad_frame(frame))
        assert all(s in str(derr.value) for s in case.bad_frame_says), str(derr.value)


def test_the_documented_examples_are_valid_features() -> None:
    """docs/reference.md's YAML examples of the kinds validate as their kinds' spec classes."""
    import re

    import yaml

    text = (Path(__file__).resolve().parents[2] / "docs" / "reference.md").read_text()
    section = text[text.index("## Feature kinds"):]
    section = section[: section.index("\n## ", 3)]
    blocks = re.findall(r"```yaml\n(.*?)```", section, flags=re.S)
    features = [f for block in blocks for f in yaml.safe_load(block)]
    assert {"match", "cross"} <= {f["kind"] for f in features}
    by_name = {k.name: k for k in kinds()}
    for f in features:
        by_name[f["kind"]].spec.model_validate(f)


def _validate(features: list[dict[str, Any]]) -> FeatureSpec:
    return validate(FeatureSpec, {"name": "s", "features": features, "tasks": [{"name": "y", "label": "y"}]}, "spec.yaml")


def test_a_column_is_shared_by_derived_kinds_but_read_as_one_input_type() -> None:
    match = {"kind": "match", "name": "m", "candidate": "item", "history": "hist", "max_len": 5}
    spec = _validate([{"kind": "categorical", "name": "item"}, {"kind": "sequence", "name": "hist", "max_len": 3}, match])
    assert spec.required_columns()[:2] == ["item", "hist"]
    with pytest.raises(SpecError, match=r"features\[1\] \(m\): column 'item' is read as a categorical input here but as a numeric input by feature 'item'"):
        _validate([{"kind": "numeric", "name": "item"}, match])
    with pytest.raises(SpecError, match=r"features\[1\]: duplicate source column 'item'"):
        _validate([{"kind": "categorical", "name": "item"}, {"kind": "categorical", "name": "item2", "column": "item"}])
    with pytest.raises(SpecError, match="label column 'hist' is also the feature 'm'"):
        validate(FeatureSpec, {"name": "s", "features": [match], "tasks": [{"name": "y", "label": "hist"}]}, "spec.yaml")


def test_the_server_takes_one_input_per_column_with_the_widest_window(frame: pl.DataFrame) -> None:
    spec = _spec(CASES[[c.kind for c in CASES].index("match")])
    inputs = raw_inputs(Preprocessor.fit(spec, frame))
    assert [(i.name, i.kind, i.max_len) for i in inputs] == [
        ("item", "categorical", None), ("hist", "sequence", 6), ("cat", "categorical", None), ("hcat", "sequence", 6)]
