"""Fitted preprocessing: JSON round trip, index conventions, numeric transforms, bad data."""

from __future__ import annotations

import json
from pathlib import Path

import mmh3
import numpy as np
import polars as pl
import pytest
import torch

from recsys_mtl.features.fitted import FIRST, MISSING, OOV
from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.data.readers import read_table
from recsys_mtl.features.sequences import sequence_items
from recsys_mtl.errors import DataError
from recsys_mtl.spec import FeatureSpec
from recsys_mtl.spec.features import SequenceFeature
from serving.contract import split_items


def small_spec(**overrides: object) -> FeatureSpec:
    raw = {
        "name": "small",
        "features": [
            {"name": "city", "kind": "categorical", "vocab": {"min_freq": 2}},
            {"name": "home_city", "kind": "categorical", "shared_table": "cities"},
            {"name": "work_city", "kind": "categorical", "shared_table": "cities"},
            {"name": "brand", "kind": "categorical", "hash": {"buckets": 16, "seed": 7}},
            {"name": "price", "kind": "numeric", "log1p": True, "clip": {"min": 0}},
            {"name": "age", "kind": "numeric", "missing": {"impute": "median", "indicator": True}},
            {"name": "score", "kind": "numeric", "quantile_buckets": 4},
            {"name": "tags", "kind": "sequence", "max_len": 3, "pooling": "sum"},
        ],
        "tasks": [
            {"name": "click", "label": "clicked"},
            {"name": "buy", "label": "bought = 'yes'", "mask": "clicked = 1"},
        ],
    }
    raw.update(overrides)
    return FeatureSpec.model_validate(raw)


def small_df() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "city": ["a", "a", "b", "b", "c", None],
            "home_city": ["x", "y", "x", None, "x", "y"],
            "work_city": ["z", "x", "x", "x", "w", "y"],
            "brand": ["nike", "puma", None, "nike", "adidas", "nike"],
            "price": [10.0, 100.0, None, 0.0, 5.0, 1000.0],
            "age": [20.0, None, 40.0, 30.0, 50.0, 60.0],
            "score": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            "tags": [["t1", "t2"], [], None, ["t1", "t3", "t2", "t4"], ["t9"], ["t1"]],
            "clicked": [1, 0, 1, 1, 0, 1],
            "bought": ["yes", "no", "no", "yes", "no", None],
        }
    )


def test_vocabulary_indices_follow_the_convention() -> None:
    pre = Preprocessor.fit(small_spec(), small_df())
    assert pre.tables["city"].vocab == ["a", "b"]  # 'c' seen once < min_freq 2
    enc = pre.transform(pl.DataFrame(small_df().to_dict()).with_columns(city=pl.Series(["a", "b", "c", "zzz", "a", None])))
    assert enc.categorical[:, 0].tolist() == [FIRST, FIRST + 1, OOV, OOV, FIRST, MISSING]


def test_shared_table_vocabulary_is_the_union() -> None:
    pre = Preprocessor.fit(small_spec(), small_df())
    assert set(pre.tables["cities"].vocab) == {"x", "y", "z", "w"}
    assert pre.layout.tables["cities"][0] == 4 + FIRST
    assert [t for _, t in pre.layout.categorical][:3] == ["city", "cities", "cities"]


def test_hashing_is_murmur3_of_the_string() -> None:
    pre = Preprocessor.fit(small_spec(), small_df())
    enc = pre.transform(small_df())
    expected = FIRST + mmh3.hash("puma", 7, signed=False) % 16
    assert enc.categorical[1, 3].item() == expected
    assert enc.categorical[2, 3].item() == MISSING


def test_numeric_transforms_and_missing_indicator() -> None:
    pre = Preprocessor.fit(small_spec(), small_df())
    enc = pre.transform(small_df())
    price = pre.numeric["price"]
    assert price.impute_value == pytest.approx(np.mean([10, 100, 0, 5, 1000]))
    raw = np.log1p(np.array([10, 100, price.impute_value, 0, 5, 1000]))
    expected = (raw - raw.mean()) / raw.std()
    assert np.allclose(enc.numeric[:, 0].numpy(), expected, atol=1e-5)
    # age imputed with the median, standardized, and flagged by its indicator (last column)
    assert pre.numeric["age"].impute_value == 40.0
    assert pre.layout.indicators == ["price", "age", "score"]
    age_indicator = len(pre.layout.numeric) + pre.layout.indicators.index("age")
    assert enc.numeric[:, age_indicator].tolist() == [0, 1, 0, 0, 0, 0]


def test_quantile_buckets_become_an_embedded_index() -> None:
    pre = Preprocessor.fit(small_spec(), small_df())
    enc = pre.transform(small_df())
    buckets = enc.categorical[:, 4]
    assert buckets.min().item() >= FIRST and torch.all(buckets[1:] >= buckets[:-1])
    assert ("score", "score") in pre.layout.categorical


def test_sequences_pad_truncate_and_map() -> None:
    pre = Preprocessor.fit(small_spec(), small_df())
    seq = pre.transform(small_df()).sequences["tags"]
    vocab = pre.tables["tags"].vocab
    idx = {v: i + FIRST for i, v in enumerate(vocab)}
    assert seq.shape == (6, 3)
    assert seq[0].tolist() == [idx["t1"], idx["t2"], 0]
    assert seq[1].tolist() == [0, 0, 0] and seq[2].tolist() == [0, 0, 0]  # empty and null lists
    assert seq[3].tolist() == [idx["t1"], idx["t3"], idx["t2"]]  # truncated to max_len


def test_labels_masks_and_null_labels() -> None:
    pre = Preprocessor.fit(small_spec(), small_df())
    enc = pre.transform(small_df())
    assert enc.labels[:, 1].tolist() == [1, 0, 0, 1, 0, 0]
    # buy counts only on clicked rows, and not where its label is null
    assert enc.weights[:, 1].tolist() == [1, 0, 1, 1, 0, 0]
    assert enc.weights[:, 0].tolist() == [1] * 6


def test_json_round_trip_gives_identical_tensors(tmp_path: Path) -> None:
    spec, df = small_spec(), small_df()
    pre = Preprocessor.fit(spec, df)
    pre.save(tmp_path / "pre.json")
    state = json.loads((tmp_path / "pre.json").read_text())
    assert state["tables"]["city"]["vocab"] == ["a", "b"]  # plain, inspectable
    again = Preprocessor.load(tmp_path / "pre.json", spec)
    a, b = pre.transform(df), again.transform(df)
    for key, value in a.columns().items():
        assert torch.equal(value, b.columns()[key]), key
    assert again.layout == pre.layout


def test_load_rejects_a_different_spec(tmp_path: Path) -> None:
    pre = Preprocessor.fit(small_spec(), small_df())
    pre.save(tmp_path / "pre.json")
    other = small_spec(name="other")
    with pytest.raises(DataError, match="pre.json: fitted for a different spec"):
        Preprocessor.load(tmp_path / "pre.json", other)


@pytest.mark.parametrize(
    "change, fragment",
    [
        (lambda df: df.drop("price"), "column 'price' named in the spec is missing"),
        (lambda df: df.with_columns(pl.lit(None, dtype=pl.Float64).alias("age")), "column 'age' (numeric feature 'age') is entirely null"),
        (lambda df: df.with_columns(pl.Series("price", ["1", "x", "2", "3", "4", "5"])), "non-numeric value 'x'"),
        (lambda df: df.with_columns(pl.Series("tags", ["a"] * 6)), "must be a list column"),
        (lambda df: df.with_columns(pl.Series("clicked", [0, 1, 2, 0, 1, 0])), "binary label 'clicked' has values other than 0/1"),
        (lambda df: df.head(0), "no rows"),
        (lambda df: df.with_columns(pl.Series("clicked", [0] * 6)).with_columns(pl.lit("no").alias("bought")).with_columns(pl.lit(0).alias("clicked")), "task 'buy' has no labelled rows"),
    ],
)
def test_bad_data_names_the_column(change, fragment: str) -> None:  # type: ignore[no-untyped-def]
    bad = change(small_df())
    with pytest.raises(DataError) as exc:
        Preprocessor.fit(small_spec(), bad, where="train split").transform(bad, where="train split")
    assert "train split" in str(exc.value) or "train:" in str(exc.value)
    assert fragment in str(exc.value)


def test_unseen_categories_map_to_oov_or_fail_by_policy() -> None:
    df = small_df()
    later = df.with_columns(pl.Series("home_city", ["x", "q", "x", None, "r", "y"]))
    pre = Preprocessor.fit(small_spec(), df)
    assert pre.transform(later).categorical[:, 1].tolist()[:2] == [pre.tables["cities"].vocab.index("x") + FIRST, OOV]
    strict = small_spec().model_dump(mode="json", exclude_defaults=True)
    strict["features"][1]["unseen"] = "error"
    strict_spec = FeatureSpec.model_validate(strict)
    pre = Preprocessor.fit(strict_spec, df)
    with pytest.raises(DataError, match=r"test split: column 'home_city' \(feature 'home_city'\) has 2 values unseen in train"):
        pre.transform(later, where="test split")


def test_unseen_error_needs_full_vocabulary() -> None:
    raw = small_spec().model_dump(mode="json", exclude_defaults=True)
    raw["features"][0]["unseen"] = "error"  # city has min_freq 2
    with pytest.raises(ValueError, match="unseen 'error' needs a full vocabulary"):
        FeatureSpec.model_validate(raw)


def separated_spec(separator: str = "|") -> FeatureSpec:
    """``small_spec`` with ``tags`` read as delimited text."""
    raw = small_spec().model_dump(mode="json", exclude_defaults=True)
    raw["features"][7]["separator"] = separator
    return FeatureSpec.model_validate(raw)


def test_delimited_csv_column_fits_and_encodes_like_the_list_column(tmp_path: Path) -> None:
    lists = small_df()
    text = lists.with_columns(pl.Series("tags", ["t1| t2", "", None, " t1|t3||t2 |t4", "t9", "t1|"]))
    text.write_csv(tmp_path / "train.csv")
    csv = read_table(tmp_path / "train.csv")
    assert csv.schema["tags"] == pl.String
    a, b = Preprocessor.fit(small_spec(), lists), Preprocessor.fit(separated_spec(), csv)
    assert a.state()["tables"] == b.state()["tables"] and a.layout == b.layout
    want, got = a.transform(lists).columns(), b.transform(csv).columns()
    for key, value in want.items():
        assert torch.equal(value, got[key]), key
    # empty and null strings are empty sequences (all padding); a list column is still taken
    empty = text.with_columns(pl.Series("tags", ["", None, " ", "|", " | ", ""]))
    assert not b.transform(empty).sequences["tags"].any()
    assert torch.equal(b.transform(lists).sequences["tags"], want["seq.tags"])


def test_training_split_rule_is_the_servers() -> None:
    # the polars expression (fit, transform, streaming) against serving.contract.split_items
    rng = np.random.default_rng(0)
    alphabet = list("ab|, \t\u00a0é")
    values = ["".join(rng.choice(alphabet, size=rng.integers(0, 12))) for _ in range(400)] + [None]
    df = pl.DataFrame({"s": values}, schema={"s": pl.String})
    for sep in ("|", ", ", " "):
        f = SequenceFeature(kind="sequence", name="s", max_len=4, separator=sep)
        got = df.select(sequence_items(f, pl.String)).to_series().to_list()
        assert [g or [] for g in got] == [[] if v is None else split_items(v, sep) for v in values], sep


def test_text_sequence_without_separator_is_refused_saying_how() -> None:
    bad = small_df().with_columns(pl.Series("tags", ["a|b"] * 6))
    with pytest.raises(DataError) as exc:
        Preprocessor.fit(small_spec(), bad, where="train.csv")
    msg = str(exc.value)
    assert msg.startswith("train.csv: column 'tags' (sequence feature 'tags') must be a list column, got String")
    assert "set 'separator' on the feature" in msg
    floats = small_df().with_columns(pl.Series("tags", [1.5] * 6))
    text = r"column 'tags' \(sequence feature 'tags'\) must be a list column or text split on '\|', got Float64"
    with pytest.raises(DataError, match=text):
        Preprocessor.fit(separated_spec(), floats, where="train.csv")
