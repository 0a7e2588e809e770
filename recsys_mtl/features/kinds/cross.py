"""``cross``: a hashed (or vocabulary) cross of 2-3 categorical columns with its own embedding table.

The crossed value of a row is its columns' values as strings (an integer is its decimal string)
joined with :data:`JOIN` (ASCII unit separator, U+001F), e.g. ``"u42\\x1fi7"``; it is then indexed
like a categorical value: MurmurHash3 x86 32-bit (unsigned, ``seed``) modulo ``buckets`` with
``hash`` (the same rule as a hashed categorical, ``mmh3.hash(joined, seed, signed=False)``), or a
vocabulary of the crosses seen in train (``vocab``). The exported graph builds the same string with
``StringConcat`` (opset 20) and hashes it with ``com.microsoft.MurmurHash3``.

A row where any of the columns is missing (null or ``""``) gets index 0 (missing): a cross with a
missing part is not a cross. The columns may also be read by other features (typically the
categorical features of the same ids): the cross only reads them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import polars as pl
from pydantic import Field, model_validator

from recsys_mtl.errors import DataError
from recsys_mtl.features.base import Columns, FeatureKind, Fitted, TableUse
from recsys_mtl.features.fitted import MISSING
from recsys_mtl.features.kinds.categorical import HashConfig, VocabConfig
from recsys_mtl.features.layout import Layout
from recsys_mtl.features.registry import register
from recsys_mtl.strict import StrictModel
from serving.contract import NULL_TOKEN, InputSpec

if TYPE_CHECKING:
    from recsys_mtl.features.graph import GraphBuilder

JOIN = "\x1f"


class CrossFeature(StrictModel):
    """A cross of ``columns`` with its own table (named as the feature)."""

    kind: Literal["cross"]
    """`cross`"""
    name: str = Field(min_length=1)
    """the feature's name (unique in the spec), also its embedding table's name"""
    columns: tuple[str, ...] = Field(min_length=2, max_length=3)
    """the raw categorical columns crossed, in this order (2 or 3)"""
    hash: HashConfig | None = None
    """hashing into buckets (the usual choice: crosses are many); or ``vocab`` for crosses seen in train"""
    vocab: VocabConfig | None = None
    """a vocabulary of the crosses seen in train, instead of `hash`"""
    embedding_dim: int = Field(8, ge=1)
    """width of the cross's embedding rows"""

    @model_validator(mode="after")
    def _one_index(self) -> "CrossFeature":
        if (self.hash is None) == (self.vocab is None):
            raise ValueError("give either 'hash' (e.g. hash: {buckets: 100000}) or 'vocab', exactly one")
        if len(set(self.columns)) != len(self.columns):
            raise ValueError(f"columns: {list(self.columns)} names a column twice")
        return self


def joined(f: CrossFeature) -> pl.Expr:
    """The crossed string per row; null when any column is missing (null or "")."""
    parts = [pl.col(c).cast(pl.String) for c in f.columns]
    parts = [pl.when(p == NULL_TOKEN).then(None).otherwise(p) for p in parts]
    return pl.concat_str(parts, separator=JOIN)


@register
class Cross(FeatureKind[CrossFeature]):
    name = "cross"
    spec = CrossFeature
    order = 4
    summary = "a hashed (or vocabulary) cross of 2-3 categorical columns with its own embedding table"
    plain = False

    def inputs(self, f: CrossFeature) -> list[InputSpec]:
        return [InputSpec(c, f.name, "categorical") for c in f.columns]

    def table_uses(self, f: CrossFeature) -> list[TableUse]:
        vocab = f.vocab or VocabConfig()
        # shared=True: a categorical naming this table in its shared_table is checked to agree with it
        return [TableUse(f.name, f.embedding_dim, None if f.hash is None else (f.hash.buckets, f.hash.seed),
                         vocab.min_freq, vocab.max_size, shared=True)]

    def table_values(self, f: CrossFeature, table: str, lf: pl.LazyFrame, schema: pl.Schema) -> pl.LazyFrame:
        return lf.select(joined(f).alias("value"))

    def check_frame(self, f: CrossFeature, df: pl.DataFrame, where: str) -> None:
        for c in f.columns:
            if isinstance(df.schema[c], (pl.List, pl.Array, pl.Struct)):
                raise DataError(f"{where}: column {c!r} (cross feature {f.name!r}) must hold one value per row, got {df.schema[c]}")

    def layout(self, f: CrossFeature, fitted: Fitted, lay: Layout) -> None:
        lay.categorical.append((f.name, f.name))
        lay.tables[f.name] = (fitted.tables[f.name].size, f.embedding_dim)

    def transform(self, f: CrossFeature, df: pl.DataFrame, fitted: Fitted, where: str) -> Columns[np.ndarray]:
        values = df.select(joined(f).alias("v"))["v"]
        return Columns(categorical=[fitted.tables[f.name].lookup(values)])

    def graph(self, f: CrossFeature, b: GraphBuilder, fitted: Fitted) -> Columns[str]:
        from onnx import TensorProto

        from recsys_mtl.features.graph import ExportError, lookup

        if b.opset < 20:
            raise ExportError(f"cross feature {f.name!r}: StringConcat needs ONNX opset >= 20, got {b.opset}")
        empty = b.const(np.array(NULL_TOKEN, dtype=object), "empty")
        sep = b.const(np.array(JOIN, dtype=object), "join")
        text, present = f.columns[0], None
        for k, c in enumerate(f.columns):
            here = b.op("Not", [b.op("Equal", [c, empty], f"{f.name}.{k}.empty")], f"{f.name}.{k}.present")
            present = here if present is None else b.op("And", [present, here], f"{f.name}.{k}.all")
            if k:
                text = b.op("StringConcat", [b.op("StringConcat", [text, sep], f"{f.name}.{k}.sep"), c], f"{f.name}.{k}.join")
        idx = lookup(b, text, fitted.tables[f.name], f.name)
        mask = b.op("Cast", [present], f"{f.name}.present64", to=TensorProto.INT64)
        # a missing part: index MISSING (0), whatever the joined string hashes to
        assert MISSING == 0
        return Columns(categorical=[b.op("Mul", [idx, mask], f"{f.name}.idx")])
