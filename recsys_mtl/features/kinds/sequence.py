"""``sequence``: a list column (or delimited text) → (N, max_len) indices, the first ``max_len`` items kept."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Sequence

import numpy as np
import polars as pl
from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from recsys_mtl.features.base import Columns, FeatureKind, Fitted, TableUse
from recsys_mtl.features.fitted import FittedTable
from recsys_mtl.features.kinds.categorical import _Categorical, table_use
from recsys_mtl.features.layout import Layout
from recsys_mtl.features.registry import register
from recsys_mtl.features.sequences import check_sequence_column, sequence_items
from recsys_mtl.strict import StrictModel
from serving.contract import InputSpec

if TYPE_CHECKING:
    from recsys_mtl.features.graph import GraphBuilder


class TargetAttentionConfig(StrictModel):
    """DIN target attention (see :mod:`recsys_mtl.nn.target_attention`): the sequence is pooled
    with weights computed from each element and the ``query`` feature's embedding."""

    query: str = Field(min_length=1)
    """a categorical feature (e.g. the candidate item) sharing this sequence's embedding table"""
    hidden: tuple[int, ...] = Field((80, 40), min_length=1)
    """widths of the local activation unit's hidden layers (DIN: 80, 40)"""
    softmax: bool = False
    """normalise weights with a softmax over the sequence (DIN's reference code) instead of the paper's raw weights"""


class SequenceFeature(_Categorical):
    """A multi-hot / sequence list column, padded or truncated to ``max_len`` and pooled.

    With ``separator`` the column may also be text (CSV): each value is split into items by
    :func:`serving.contract.split_items`, the rule the exported model's server applies as well.
    """

    kind: Literal["sequence"]
    """`sequence`"""
    max_len: int = Field(ge=1)
    """items kept per row: longer lists are truncated, shorter ones padded"""
    pooling: Literal["mean", "sum", "max", "target_attention"] = "mean"
    """how the item embeddings become one vector: mean, sum, max, or DIN target attention (needs `attention`)"""
    attention: TargetAttentionConfig | None = None
    """the target attention's query and sizes (with `pooling: target_attention`)"""
    separator: str | None = Field(None, min_length=1)
    """split a text column (e.g. 'Action|Comedy' from a CSV) into items on this string: items are stripped of
    surrounding ASCII whitespace and empty ones dropped, so an empty or null value is an empty sequence; a list column
    is still taken as it is. The export records it, and the server then takes a delimited string or a list for this
    input"""

    @model_serializer(mode="wrap")
    def _drop_unset_separator(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # a spec without a separator dumps (and hashes, see preprocess.spec_hash) as before the field existed
        out = handler(self)
        if out.get("separator", "") is None:
            del out["separator"]
        return out

    @model_validator(mode="after")
    def _attention_with_pooling(self) -> "SequenceFeature":
        if (self.pooling == "target_attention") != (self.attention is not None):
            raise ValueError("pooling 'target_attention' and an 'attention' section (with its query) go together")
        return self


def pad_indices(table: FittedTable, col: pl.Series, max_len: int) -> np.ndarray:
    """A list column (a row's items) → (N, max_len) int64 indices, the first ``max_len`` items kept."""
    heads = col.list.head(max_len)
    lengths = heads.list.len().fill_null(0).to_numpy().astype(np.int64)
    flat = heads.explode(empty_as_null=False, keep_nulls=False)
    idx = table.lookup(flat)
    out = np.zeros((col.len(), max_len), dtype=np.int64)
    rows = np.repeat(np.arange(col.len()), lengths)
    starts = np.cumsum(lengths) - lengths
    pos = np.arange(lengths.sum()) - np.repeat(starts, lengths)
    out[rows, pos] = idx
    return out


@register
class Sequence_(FeatureKind[SequenceFeature]):
    name = "sequence"
    spec = SequenceFeature
    order = 2
    summary = "a list column (or delimited text) → max_len item indices, pooled (mean, sum, max, DIN target attention)"

    def inputs(self, f: SequenceFeature) -> list[InputSpec]:
        return [InputSpec(f.source, f.name, "sequence", f.max_len, f.separator)]

    def check_in_spec(self, f: SequenceFeature, features: Sequence[Any], i: int) -> None:
        """The attention query is a categorical feature sharing the sequence's table."""
        if f.attention is None:
            return
        where = f"features[{i}] ({f.name}).attention.query"
        q = next((g for g in features if g.name == f.attention.query), None)
        if q is None or q.kind != "categorical":
            raise ValueError(f"{where}: {f.attention.query!r} is not a categorical feature")
        if q.table != f.table:
            raise ValueError(f"{where}: {f.attention.query!r} must share the sequence's embedding table (set the same 'shared_table' on both)")

    def table_uses(self, f: SequenceFeature) -> list[TableUse]:
        return [table_use(f)]

    def table_values(self, f: SequenceFeature, table: str, lf: pl.LazyFrame, schema: pl.Schema) -> pl.LazyFrame:
        out = lf.select(sequence_items(f, schema[f.source]).alias("value")).explode("value", empty_as_null=False, keep_nulls=False)
        return out.select(pl.col("value").cast(pl.String))

    def check_frame(self, f: SequenceFeature, df: pl.DataFrame, where: str) -> None:
        check_sequence_column(f, df.schema[f.source], where)

    def layout(self, f: SequenceFeature, fitted: Fitted, lay: Layout) -> None:
        lay.sequences.append((f.name, f.table, f.max_len, f.pooling))
        lay.tables[f.table] = (fitted.tables[f.table].size, f.embedding_dim)
        if f.attention is not None:
            column = [name for name, _ in lay.categorical].index(f.attention.query)
            lay.attention[f.name] = (column, tuple(f.attention.hidden), f.attention.softmax)

    def transform(self, f: SequenceFeature, df: pl.DataFrame, fitted: Fitted, where: str) -> Columns[np.ndarray]:
        items = df.select(sequence_items(f, df.schema[f.source])).to_series()
        return Columns(sequences={f.name: pad_indices(fitted.tables[f.table], items, f.max_len)})

    def graph(self, f: SequenceFeature, b: GraphBuilder, fitted: Fitted) -> Columns[str]:
        from recsys_mtl.features.graph import lookup, pad_to

        # fixed to max_len columns: a client feeding more (Triton) gets its first max_len items, which
        # is what the server's feed (InputSpec.kept) already holds
        return Columns(sequences={f.name: pad_to(b, lookup(b, f.source, fitted.tables[f.table], f.name), f.max_len, f.name)})
