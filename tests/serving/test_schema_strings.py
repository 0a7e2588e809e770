"""The Arrow → object-array string conversion of :mod:`serving.schema` (shared ``str`` objects per
distinct value) gives the values a row-by-row conversion gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from serving.batch_inputs import dictionary_paths
from serving.contract import InputSpec
from serving.schema import _arrow_categorical, _arrow_sequence, _pad_arrow_lists, _str_objects, pad_lists


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


def test_dictionary_encoded_columns_give_the_plain_columns_values(tmp_path: Path) -> None:
    """Parquet string columns read dictionary-encoded (as ``score`` reads them) convert to the same feed."""
    rows = [None, ["a", None, "b"], [], ["b", "c", "a", "a"], ["c"]]
    table = pa.table({"c": pa.array(["x", None, "y", "x", "z"]), "n": pa.array([1, 2, 3, 4, 5]),
                      "tags": pa.array(rows, pa.list_(pa.string()))})
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, row_group_size=2)
    pf = pq.ParquetFile(path)
    paths = dictionary_paths(pf, ["c", "n", "tags"])
    assert paths == ["c", "tags.list.element"]  # strings only, the list's items by their leaf path
    read = pq.ParquetFile(path, read_dictionary=paths)
    cat = InputSpec(name="c", feature="c", kind="categorical")
    seq = InputSpec(name="tags", feature="tags", kind="sequence", max_len=3)
    for g in range(read.metadata.num_row_groups):
        dict_group, plain_group = read.read_row_group(g), pf.read_row_group(g)
        assert pa.types.is_dictionary(dict_group.column("c").type)
        assert _arrow_categorical(cat, dict_group.column("c")).tolist() == _arrow_categorical(cat, plain_group.column("c")).tolist()
        got, want = _arrow_sequence(seq, dict_group.column("tags")), _arrow_sequence(seq, plain_group.column("tags"))
        assert got.shape == want.shape and (got == want).all()
    # integer categories in a dictionary are their decimal strings; a null entry is the missing value
    ints = pa.chunked_array([pa.DictionaryArray.from_arrays(pa.array([0, 1, None, 0]), pa.array([7, 12]))])
    assert _arrow_categorical(cat, ints).tolist() == ["7", "12", cat.missing, "7"]
