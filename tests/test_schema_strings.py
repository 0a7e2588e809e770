"""The Arrow → object-array string conversion of :mod:`serving.schema` (shared ``str`` objects per
distinct value) gives the values a row-by-row conversion gives."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from serving.contract import InputSpec
from serving.schema import _arrow_categorical, _pad_arrow_lists, _str_objects, pad_lists


def test_str_objects_equal_to_numpy_across_chunks() -> None:
    col = pa.chunked_array([pa.array(["a", "b", "a", "é", ""]), pa.array([], pa.string()), pa.array(["b", "z"])])
    got = _str_objects(col)
    assert got.dtype == object and got.shape == (7,)
    assert got.tolist() == ["a", "b", "a", "é", "", "b", "z"]
    assert all(type(v) is str for v in got)
    assert _str_objects(pa.chunked_array([], pa.string())).shape == (0,)


def test_categorical_fills_nulls_and_writes_integers_as_strings() -> None:
    spec = InputSpec(name="c", feature="c", kind="categorical")
    got = _arrow_categorical(spec, pa.chunked_array([pa.array([3, None, 12]), pa.array([3])]))
    assert got.tolist() == ["3", spec.missing, "12", "3"]
    strings = _arrow_categorical(spec, pa.chunked_array([pa.array(["x", None, "y", "x"])]))
    assert strings.tolist() == ["x", spec.missing, "y", "x"]


def test_padded_lists_equal_row_by_row_rule() -> None:
    rng = np.random.default_rng(0)
    rows = [None if rng.random() < 0.1 else [None if rng.random() < 0.1 else f"t{rng.integers(5)}"
                                             for _ in range(rng.integers(0, 6))] for _ in range(300)]
    col = pa.chunked_array([pa.array(rows[:100], pa.list_(pa.string())), pa.array(rows[100:], pa.list_(pa.string()))])
    want = pad_lists([[("" if x is None else x) for x in (r or [])] for r in rows], "")
    got = _pad_arrow_lists(col, "")
    assert got.shape == want.shape and (got == want).all()
