"""The input contract shared by the exporter (writes metadata.json) and the server (reads it)."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

from serving.contract import ContractError, InputSpec, inputs_from_json, inputs_to_json, split_items
from serving.metadata import ExportLoadError, load_metadata
from serving.schema import Schema

INPUTS = [
    InputSpec("age", "age", "numeric"),
    InputSpec("job", "job_feature", "categorical"),
    InputSpec("tags", "tags", "sequence", max_len=3),
]


def test_the_contract_imports_only_the_standard_library() -> None:
    # both sides import it; it must not pull recsys_mtl, torch (or anything) into the server
    import serving.contract

    tree = ast.parse(Path(serving.contract.__file__).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= {"__future__", "dataclasses", "typing"}, imported


def test_round_trip_through_json() -> None:
    written = json.loads(json.dumps(inputs_to_json(INPUTS)))
    assert inputs_from_json(written) == INPUTS
    assert written[0] == {"name": "age", "feature": "age", "kind": "numeric", "dtype": "float64", "shape": ["batch"],
                          "missing": "NaN"}
    assert written[2]["max_len"] == 3 and written[2]["shape"] == ["batch", "tags.len"] and written[2]["missing"] == ""
    assert "max_len" not in written[1]


def test_entries_without_the_derived_fields_are_read() -> None:
    # dtype / missing / shape / feature follow from name and kind; a hand-written entry may leave them out
    assert inputs_from_json([{"name": "x", "kind": "numeric"}]) == [InputSpec("x", "x", "numeric")]


def test_head_is_the_one_truncation_the_server_applies() -> None:
    spec = INPUTS[2]
    assert list(spec.head(["a", "b", "c", "d"])) == ["a", "b", "c"]
    schema = Schema.for_inputs(INPUTS)
    feed, _ = schema.from_json([{"age": 1, "job": "x", "tags": ["a", "b", "c", "d", "e"]}], 10)
    import pyarrow as pa

    arrow, _ = schema.from_arrow(pa.table({"age": [1.0], "job": ["x"], "tags": [["a", "b", "c", "d", "e"]]}), 10)
    assert feed["tags"].tolist() == arrow["tags"].tolist() == [["a", "b", "c"]]


@pytest.mark.parametrize(("edit", "text"), [
    (lambda e: e[2].update(max_len=0), "inputs[2] ('tags'): 'max_len' must be a positive integer"),
    (lambda e: e[2].update(max_len=True), "inputs[2] ('tags'): 'max_len' must be a positive integer"),
    (lambda e: e[0].update(max_len=5), "inputs[0] ('age'): 'max_len' applies to sequence inputs only"),
    (lambda e: e[0].update(dtype="string"), "inputs[0] ('age'): 'dtype' must be 'float64' for a numeric input"),
    (lambda e: e[1].update(missing="?"), "inputs[1] ('job'): 'missing' must be '' for a categorical input"),
    (lambda e: e[2].update(shape=["batch"]), "inputs[2] ('tags'): 'shape' must be"),
    (lambda e: e[1].update(kind="text"), "inputs[1] ('job'): 'kind' must be one of"),
    (lambda e: e[2].update(separator=""), "inputs[2] ('tags'): 'separator' must be a non-empty string"),
    (lambda e: e[2].update(separator=7), "inputs[2] ('tags'): 'separator' must be a non-empty string"),
    (lambda e: e[1].update(separator="|"), "inputs[1] ('job'): 'separator' must be a non-empty string, on a sequence input only"),
    (lambda e: e[1].update(feature=7), "inputs[1] ('job'): 'feature' must be a non-empty string"),
    (lambda e: e[1].update(name="age"), "inputs[1]: name 'age' appears twice"),
    (lambda e: e.__setitem__(0, "age"), "inputs[0]: expected an object with a non-empty 'name'"),
])
def test_tampered_entry_is_refused_naming_the_file_and_field(tmp_path: Path, edit: Any, text: str) -> None:
    entries = inputs_to_json(INPUTS)
    edit(entries)
    with pytest.raises(ContractError) as plain:
        inputs_from_json(entries)
    assert text in str(plain.value)
    (tmp_path / "model.onnx").write_bytes(b"")
    meta = {"inputs": entries, "outputs": [{"name": "p"}], "files": {"fp32": "model.onnx"}}
    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ExportLoadError) as err:
        load_metadata(tmp_path)
    assert str(err.value).startswith(f"{tmp_path / 'metadata.json'}: ") and text in str(err.value)


def test_separator_round_trips_and_an_entry_without_one_reads_as_none() -> None:
    delimited = InputSpec("tags", "tags", "sequence", max_len=3, separator="|")
    written = json.loads(json.dumps(inputs_to_json([delimited])))
    assert written[0]["separator"] == "|" and inputs_from_json(written) == [delimited]
    # an export written before separators existed (and any list-only sequence) has no key: still served, as lists
    assert "separator" not in inputs_to_json(INPUTS)[2]
    assert inputs_from_json(inputs_to_json(INPUTS))[2].separator is None


@pytest.mark.parametrize(("text", "items"), [
    ("a|b", ["a", "b"]), ("", []), (" ", []), ("|", []), (" a | b |", ["a", "b"]), ("a||b", ["a", "b"]),
    ("\ta\n|\r\fb\v", ["a", "b"]), ("\u00a0a|b", ["\u00a0a", "b"]), ("a b|c", ["a b", "c"]), ("x", ["x"]),
])
def test_split_items_rule(text: str, items: list[str]) -> None:
    # literal separator; ASCII whitespace stripped around items (not inside, not non-ASCII spaces); empty items dropped
    assert split_items(text, "|") == items


def test_a_bad_spec_cannot_be_built() -> None:
    with pytest.raises(ContractError, match="'max_len' must be a positive integer"):
        InputSpec("tags", "tags", "sequence")


def test_condition_inputs_are_described_apart_from_the_raw_columns() -> None:
    from serving.contract import ConditionSpec

    cond = ConditionSpec("preference", (0.7, 0.3))
    assert json.loads(json.dumps(cond.to_json())) == {"name": "preference", "kind": "condition", "dtype": "float32",
                                                      "shape": ["batch", 2], "default": [0.7, 0.3]}
    with pytest.raises(ContractError, match="'kind' must be one of"):  # never a request column
        inputs_from_json([cond.to_json()])
