"""The preprocessing graph equals :meth:`Preprocessor.transform` bit for bit on raw columns."""

from __future__ import annotations

import random
import string

import mmh3
import numpy as np
import onnxruntime as ort
import polars as pl
import pytest
from tests.support.synthetic import synthetic_spec
from tests.support.export import held_out

from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.data.synthetic import SyntheticConfig, generate
from recsys_mtl.export import ExportError
from recsys_mtl.export.preprocess_graph import build_preprocess_graph, encoded_names, raw_inputs
from recsys_mtl.export.raw import raw_feed
from recsys_mtl.spec import FeatureSpec


def _session(pre: Preprocessor) -> ort.InferenceSession:
    model = build_preprocess_graph(pre, opset=20)
    model.ir_version = 10
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _run(pre: Preprocessor, df: pl.DataFrame) -> dict[str, np.ndarray]:
    s = _session(pre)
    return dict(zip([o.name for o in s.get_outputs()], s.run(None, raw_feed(raw_inputs(pre), df))))


def _assert_equal(pre: Preprocessor, df: pl.DataFrame) -> None:
    got = _run(pre, df)
    ref = pre.transform(df).columns()
    assert sorted(got) == sorted(encoded_names(pre))
    for name, value in got.items():
        assert value.dtype == ref[name].numpy().dtype, name
        np.testing.assert_array_equal(value, ref[name].numpy(), err_msg=name)


def test_graph_equals_python_with_oov_nulls_and_empty_lists(fitted: tuple[Preprocessor, object]) -> None:
    pre, _ = fitted
    df = held_out()
    assert df["cat0"].null_count() > 0 and (df["tags"].list.len() == 0).any() and df["tags"].null_count() > 0
    _assert_equal(pre, df)
    enc = _run(pre, df)
    cat0 = [f for f, _ in pre.layout.categorical].index("cat0")
    assert {0, 1} <= set(enc["categorical"][:, cat0].tolist())  # missing and OOV buckets used
    assert (enc["seq.tags"][(df["tags"].list.len().fill_null(0) == 0).to_numpy()] == 0).all()


def test_sequence_input_narrower_and_wider_than_max_len(fitted: tuple[Preprocessor, object]) -> None:
    pre, _ = fitted
    df = held_out(60).with_columns(tags=pl.lit(["t3"]))  # width 1 < max_len: padded in the graph
    _assert_equal(pre, df)
    long = [f"t{i}" for i in range(30)]  # width 30 > max_len
    wide = df.with_columns(tags=pl.lit(long))
    _assert_equal(pre, wide)  # the server's feed keeps the first max_len items
    feed = raw_feed(raw_inputs(pre), wide)
    max_len = next(i.max_len for i in raw_inputs(pre) if i.name == "tags")
    assert max_len is not None and feed["tags"].shape == (60, max_len) and max_len < 30
    # a client feeding the graph directly (Triton) with all 30: the graph uses the same first max_len
    s = _session(pre)
    got = s.run(["seq.tags"], {**feed, "tags": np.array([long] * 60, dtype=object)})[0]
    np.testing.assert_array_equal(got, pre.transform(wide).columns()["seq.tags"].numpy())


def _numeric_spec() -> FeatureSpec:
    base = synthetic_spec(2).model_dump(mode="json", exclude_defaults=True)
    base["features"] = [
        {"name": "num0", "kind": "numeric", "log1p": True, "clip": {"min": -2.0}},
        {"name": "num1", "kind": "numeric", "missing": {"impute": "constant", "value": -7.5}, "clip": {"max": 1.5}},
        {"name": "num2", "kind": "numeric", "standardize": False, "missing": {"impute": "zero", "indicator": False}},
        {"name": "num3", "kind": "numeric", "quantile_buckets": 8, "log1p": True},
        {"name": "num4", "kind": "numeric", "missing": {"impute": "median"}, "log1p": True, "clip": {"min": -1, "max": 1}},
        {"name": "cat0", "kind": "categorical", "vocab": {"max_size": 5}},
        {"name": "cat1", "kind": "categorical", "shared_table": "shared"},
        {"name": "cat3", "kind": "categorical", "shared_table": "shared"},
        {"name": "cat2", "kind": "categorical", "hash": {"buckets": 1000, "seed": 4242}},
        {"name": "tags", "kind": "sequence", "max_len": 3, "hash": {"buckets": 17, "seed": 3}},
    ]
    return FeatureSpec.model_validate(base)


def test_every_numeric_transform_hashing_and_shared_tables() -> None:
    spec = _numeric_spec()
    # integer-valued num3: log1p'd values sit exactly on the quantile edges (ties), as ages would
    scale = [pl.col("num0") * 50, (pl.col("num3") * 4).round()]
    train = generate(SyntheticConfig(rows=1500, num_tasks=2, seed=3)).with_columns(scale)
    pre = Preprocessor.fit(spec, train)
    df = held_out(500).with_columns(scale)
    _assert_equal(pre, df)


def test_hash_op_matches_mmh3_on_many_strings() -> None:
    rng = random.Random(0)
    alphabet = string.printable + "éüß中文🙂"
    values = ["", " ", "a", "50000+.", " Not in universe"] + [
        "".join(rng.choices(alphabet, k=rng.randint(1, 50))) for _ in range(5000)
    ]
    for seed in (0, 1, 2**31 - 1):
        spec = FeatureSpec.model_validate({
            "name": "h", "tasks": [{"name": "t", "label": "y"}],
            "features": [{"name": "c", "kind": "categorical", "hash": {"buckets": 2**31 - 1, "seed": seed}}],
        })
        df = pl.DataFrame({"c": values, "y": [0, 1] * (len(values) // 2) + [0] * (len(values) % 2)})
        pre = Preprocessor.fit(spec, df)
        got = _run(pre, df)["categorical"][:, 0]
        expected = [0 if v == "" else 2 + mmh3.hash(v, seed, signed=False) % (2**31 - 1) for v in values]
        np.testing.assert_array_equal(got, expected)
        # the one documented difference: the graph reads "" as missing, Python hashes it
        np.testing.assert_array_equal(got[1:], pre.transform(df).categorical[1:, 0].numpy())


def test_empty_string_in_a_vocabulary_is_refused() -> None:
    spec = FeatureSpec.model_validate({
        "name": "e", "tasks": [{"name": "t", "label": "y"}],
        "features": [{"name": "c", "kind": "categorical"}],
    })
    pre = Preprocessor.fit(spec, pl.DataFrame({"c": ["", "a", "b"], "y": [0, 1, 0]}))
    with pytest.raises(ExportError, match="table 'c'.*empty string"):
        build_preprocess_graph(pre, opset=20)
