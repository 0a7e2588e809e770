"""Request validation: each bad input names its field; good rows become the ONNX feed."""

from __future__ import annotations

import io
import math

import numpy as np
import pyarrow as pa
import pytest

from serving.schema import HugeInt, RequestError, Schema, concat_feeds

META = {
    "inputs": [
        {"name": "age", "kind": "numeric", "dtype": "float64", "missing": "NaN"},
        {"name": "job", "kind": "categorical", "dtype": "string", "missing": ""},
        {"name": "tags", "kind": "sequence", "dtype": "string", "max_len": 3, "missing": ""},
    ]
}
SCHEMA = Schema(META)


def test_rows_become_the_feed() -> None:
    feed, n = SCHEMA.from_json([{"age": 30, "job": "x", "tags": ["a", None, "b", "c", "d"]},
                                {"age": None, "job": None, "tags": None}], 10)
    assert n == 2
    assert feed["age"].dtype == np.float64 and feed["age"][0] == 30 and math.isnan(feed["age"][1])
    assert feed["job"].tolist() == ["x", ""]
    assert feed["tags"].tolist() == [["a", "", "b"], ["", "", ""]]  # truncated to max_len, "" = missing
    one, _ = SCHEMA.from_json({"age": 1.5, "job": 7, "tags": []}, 10)  # a single object is one row
    assert one["job"].tolist() == ["7"] and one["tags"].shape == (1, 1)


@pytest.mark.parametrize(
    ("body", "field", "status", "text"),
    [
        ({"job": "x", "tags": []}, "age", 422, "missing field 'age'"),
        ({"age": 1, "job": "x", "tags": [], "zip": 1}, "zip", 422, "unknown field 'zip'"),
        ({"age": "old", "job": "x", "tags": []}, "age", 422, "expected a number"),
        ({"age": True, "job": "x", "tags": []}, "age", 422, "expected a number"),
        ({"age": float("nan"), "job": "x", "tags": []}, "age", 422, "write null for a missing value"),
        ({"age": float("inf"), "job": "x", "tags": []}, "age", 422, "write null"),
        ({"age": 10**400, "job": "x", "tags": []}, "age", 422, "out of the float64 range"),
        ([{"age": None, "job": "x", "tags": []}, {"age": float("nan"), "job": "x", "tags": []}], "age", 422,
         "row 1: field 'age': nan is not allowed"),
        ({"age": 1, "job": 1.5, "tags": []}, "job", 422, "expected a string"),
        ({"age": 1, "job": "x", "tags": "a"}, "tags", 422, "expected a list"),
        ({"age": 1, "job": "x", "tags": [{"a": 1}]}, "tags", 422, "expected a string"),
        ([], "body", 400, "no rows"),
        ("text", "body", 400, "must be a JSON object"),
        ([1], "body", 400, "row 0: expected an object"),
    ],
)
def test_bad_json_rows(body: object, field: str | None, status: int, text: str) -> None:
    with pytest.raises(RequestError, match=text) as err:
        SCHEMA.from_json(body, 10)
    assert err.value.field == field and err.value.status == status


def test_fast_and_per_value_paths_agree() -> None:
    # all-string / all-number columns take a one-pass path; mixing in a null or an int takes the
    # per-value one: the feed must be the same either way
    rows = [{"age": a, "job": j, "tags": []} for a, j in [(1, "a"), (2.5, "b"), (None, "c")]]
    fast, _ = SCHEMA.from_json(rows, 10)
    slow, _ = SCHEMA.from_json([*rows, {"age": 3, "job": None, "tags": []}], 10)
    assert fast["job"].tolist() == slow["job"].tolist()[:3] == ["a", "b", "c"]
    np.testing.assert_array_equal(fast["age"], slow["age"][:3])
    assert fast["age"].dtype == slow["age"].dtype == np.float64


def test_oversized_batch() -> None:
    with pytest.raises(RequestError, match="11 rows exceeds the limit of 10") as err:
        SCHEMA.from_json([{"age": 1, "job": "x", "tags": []}] * 11, 10)
    assert err.value.status == 413


def _arrow(table: pa.Table) -> pa.Table:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return pa.ipc.open_stream(sink.getvalue()).read_all()


def test_arrow_columns() -> None:
    t = _arrow(pa.table({"age": [1.0, None], "job": ["a", None], "tags": [["x", None], None]}))
    feed, n = SCHEMA.from_arrow(t, 10)
    assert n == 2 and math.isnan(feed["age"][1]) and feed["job"].tolist() == ["a", ""]
    assert feed["tags"].tolist() == [["x", ""], ["", ""]]
    with pytest.raises(RequestError, match="column 'age': expected numbers") as err:
        SCHEMA.from_arrow(pa.table({"age": ["1"], "job": ["a"], "tags": [["x"]]}), 10)
    assert err.value.field == "age"
    with pytest.raises(RequestError, match="missing column 'job'"):
        SCHEMA.from_arrow(pa.table({"age": [1.0], "tags": [["x"]]}), 10)
    with pytest.raises(RequestError, match="infinite"):
        SCHEMA.from_arrow(pa.table({"age": [math.inf], "job": ["a"], "tags": [["x"]]}), 10)


def test_arrow_truncates_sequences_and_reads_dictionaries() -> None:
    t = _arrow(pa.table({"age": [1.0], "job": pa.array(["a"]).dictionary_encode(), "tags": [["p", "q", "r", "s", "t"]]}))
    feed, _ = SCHEMA.from_arrow(t, 10)
    assert feed["job"].tolist() == ["a"] and feed["tags"].tolist() == [["p", "q", "r"]]


def test_client_text_in_errors_is_clipped() -> None:
    name = "n" * 100_000
    with pytest.raises(RequestError) as err:
        SCHEMA.from_json({"age": 1, "job": "x", "tags": [], name: 1, **{f"k{i}": 0 for i in range(1000)}}, 10)
    assert err.value.code == "unknown_field" and len(err.value.message) < 250 and len(err.value.field or "") < 150
    assert "(and 1000 more)" in err.value.message
    with pytest.raises(RequestError, match="got an integer of 5000 digits") as err:
        SCHEMA.from_json({"age": HugeInt("9" * 5000), "job": "x", "tags": []}, 10)
    assert err.value.field == "age" and len(err.value.message) < 200


DELIMITED = Schema({"inputs": [{"name": "tags", "kind": "sequence", "max_len": 3, "separator": "|"}]})


def test_delimited_strings_are_split_like_lists() -> None:
    as_text, _ = DELIMITED.from_json([{"tags": " a | b |c|d"}, {"tags": ""}, {"tags": None}, {"tags": 12}, {"tags": "||"}], 10)
    as_list, _ = DELIMITED.from_json([{"tags": ["a", "b", "c", "d"]}, {"tags": []}, {"tags": None}, {"tags": ["12"]},
                                      {"tags": []}], 10)
    assert as_text["tags"].tolist() == as_list["tags"].tolist() == [["a", "b", "c"], ["", "", ""], ["", "", ""],
                                                                      ["12", "", ""], ["", "", ""]]
    arrow_text, _ = DELIMITED.from_arrow(_arrow(pa.table({"tags": [" a | b |c|d", "", None, "12", "||"]})), 10)
    encoded = pa.array([" a | b |c|d", "", None, "12", "||"]).dictionary_encode()
    arrow_dict, _ = DELIMITED.from_arrow(pa.table({"tags": encoded}), 10)
    arrow_ints, _ = DELIMITED.from_arrow(pa.table({"tags": pa.array([12, None], pa.int64())}), 10)
    assert arrow_text["tags"].tolist() == arrow_dict["tags"].tolist() == as_list["tags"].tolist()
    assert arrow_ints["tags"].tolist() == [["12"], [""]]


@pytest.mark.parametrize("value", [2.5, True, {"a": 1}])
def test_delimited_input_refuses_other_types_naming_the_field(value: object) -> None:
    with pytest.raises(RequestError, match="row 0: field 'tags': expected a list or a string delimited by '|'") as err:
        DELIMITED.from_json({"tags": value}, 10)
    assert err.value.field == "tags" and err.value.status == 422
    with pytest.raises(RequestError, match="column 'tags': expected a list of strings or strings delimited by '|'") as err:
        DELIMITED.from_arrow(pa.table({"tags": [1.5]}), 10)
    assert err.value.field == "tags"
    with pytest.raises(RequestError, match="expected a list .or null., got a string"):  # no separator: lists only
        SCHEMA.from_json({"age": 1, "job": "x", "tags": "a|b"}, 10)


def test_concat_pads_sequence_widths() -> None:
    a, _ = SCHEMA.from_json({"age": 1, "job": "x", "tags": ["a"]}, 10)
    b, _ = SCHEMA.from_json({"age": 2, "job": "y", "tags": ["a", "b", "c"]}, 10)
    both = concat_feeds([a, b])
    assert both["tags"].tolist() == [["a", "", ""], ["a", "b", "c"]] and both["age"].tolist() == [1.0, 2.0]


def test_arrow_lists_are_padded_as_the_row_by_row_rule() -> None:
    """The vectorised Arrow list path equals pad_lists on random ragged lists with null lists, null
    items, empty lists, several chunks and a sliced (offset) array."""
    import random

    import pyarrow as pa

    from serving.schema import _pad_arrow_lists, pad_lists

    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(0, 6)
        lists = [None if rng.random() < 0.2 else
                 [None if rng.random() < 0.2 else str(rng.randint(0, 9)) for _ in range(rng.randint(0, 4))]
                 for _ in range(n)]
        col = pa.chunked_array([pa.array(lists[: n // 2], pa.list_(pa.string())),
                                pa.array(lists[n // 2:], pa.list_(pa.string()))], type=pa.list_(pa.string()))
        got = _pad_arrow_lists(col, "")
        want = pad_lists([["" if v is None else v for v in (x or [])] for x in lists], "")
        assert got.shape == want.shape and (got == want).all()
    sliced = pa.array([["a", "b"], None, ["c", None, "d"], []], pa.list_(pa.string())).slice(1, 3)
    assert _pad_arrow_lists(pa.chunked_array([sliced]), "").tolist() == [["", "", ""], ["c", "", "d"], ["", "", ""]]
