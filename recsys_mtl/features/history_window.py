"""What the candidate-vs-history kinds (``match``, ``cooccurrence``) share: their spec fields, the
history window (the first ``max_len`` entries) in polars and in ONNX, and their input checks.

The window rule is one: the history column read as items (:func:`sequence_items`), cut to its
first ``max_len`` entries, ``""`` read as missing (the server's missing token). In the graph the
cut window gets one ``""`` column appended, so a row always has a column to reduce over.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import polars as pl
from pydantic import Field, model_validator

from recsys_mtl.errors import DataError
from recsys_mtl.features.base import Fitted
from recsys_mtl.features.sequences import check_sequence_column, sequence_items
from recsys_mtl.strict import StrictModel

if TYPE_CHECKING:
    from recsys_mtl.features.graph import GraphBuilder


class CandidateHistory(StrictModel):
    """The fields of a feature comparing a candidate id with the user's history list."""

    name: str = Field(min_length=1)
    """the feature's name (unique in the spec); its outputs are numeric columns `<name>.<output>`"""
    candidate: str = Field(min_length=1)
    """raw column of the candidate id (e.g. the item being scored)"""
    history: str = Field(min_length=1)
    """raw list column (or delimited text) of the user's history, most recent first"""
    max_len: int = Field(ge=1)
    """entries of the history looked at (in the fit and per row): the first max_len"""
    separator: str | None = Field(None, min_length=1)
    """split a text history on this string (as a sequence feature's separator)"""

    @model_validator(mode="after")
    def _distinct_columns(self) -> "CandidateHistory":
        if self.candidate == self.history:
            raise ValueError("'candidate' and 'history' name the same column")
        return self

    def column(self, output: str) -> str:
        """Name of an output's column in the numeric matrix (and its ``preprocessing.json`` entry)."""
        return f"{self.name}.{output}"


def unique_outputs(outputs: Sequence[str] | None) -> None:
    """Refuse an ``outputs`` list naming an output twice (a spec field check)."""
    if outputs is not None and len(set(outputs)) != len(outputs):
        raise ValueError(f"outputs: {list(outputs)} lists an output twice")


@dataclass(frozen=True)
class Items:
    """A history column read as items (what :func:`sequence_items` needs), for the feature's errors."""

    name: str
    source: str
    separator: str | None
    kind: str


def window(f: CandidateHistory, kind: str, column: str, dtype: pl.DataType) -> pl.Expr:
    """list[str] of the first ``max_len`` entries of ``column``, "" read as null (the server's missing token)."""
    items = sequence_items(Items(f.name, column, f.separator, kind), dtype).list.head(f.max_len).cast(pl.List(pl.String))
    return items.list.eval(pl.when(pl.element() == "").then(None).otherwise(pl.element()))


def check_columns(f: CandidateHistory, kind: str, df: pl.DataFrame, where: str,
                  candidates: Sequence[str | None], histories: Sequence[str | None]) -> None:
    """History columns readable as items, candidate columns one id per row; else a :class:`DataError`
    naming the column and the feature."""
    for column in histories:
        if column is not None:
            check_sequence_column(Items(f.name, column, f.separator, kind), df.schema[column], where)
    for column in candidates:
        if column is not None and isinstance(df.schema[column], (pl.List, pl.Array, pl.Struct)):
            raise DataError(f"{where}: column {column!r} ({kind} feature {f.name!r}) must hold one id per row, "
                            f"got {df.schema[column]}")


def check_numeric_outputs(f: CandidateHistory, kind: str, outputs: Sequence[str], fitted: Fitted, path: Path) -> None:
    """Every output has a scaled (std > 0, no boundaries) numeric entry in ``fitted``."""
    for o in outputs:
        n = fitted.numeric.get(f.column(o))
        if n is None:
            raise DataError(f"{path}: numeric: no entry for {f.column(o)!r} ({kind} feature {f.name!r})")
        if n.boundaries is not None or not n.std > 0:
            raise DataError(f"{path}: numeric.{f.column(o)}: needs std > 0 and no boundaries")


def graph_window(b: GraphBuilder, column: str, max_len: int, hint: str) -> str:
    """(B, L) string input, any L → (B, <= max_len + 1): the window plus one "" column."""
    from recsys_mtl.features.graph import slice_cols

    empty = b.const(np.array([[""]], dtype=object), "empty")
    cut = slice_cols(b, column, max_len, f"{hint}.window")
    batch = b.op("Shape", [column], f"{hint}.batch", start=0, end=1)
    pad_shape = b.op("Concat", [batch, b.const(np.array([1], np.int64), "one")], f"{hint}.padshape", axis=0)
    pad = b.op("Expand", [empty, pad_shape], f"{hint}.pad")
    return b.op("Concat", [cut, pad], f"{hint}.padded", axis=1)
