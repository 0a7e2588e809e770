"""``categorical``: one string / integer column → an index into a fitted vocabulary or hash buckets.

Index convention of every table: 0 = missing, 1 = out of vocabulary, 2.. = vocabulary / buckets.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

import numpy as np
import polars as pl
from pydantic import Field, model_validator

from recsys_mtl.errors import DataError
from recsys_mtl.features.base import Columns, FeatureKind, Fitted, TableUse
from recsys_mtl.features.fitted import OOV
from recsys_mtl.features.layout import Layout
from recsys_mtl.features.registry import register
from recsys_mtl.strict import StrictModel
from serving.contract import InputSpec

if TYPE_CHECKING:
    from recsys_mtl.features.graph import GraphBuilder

log = logging.getLogger(__name__)


class VocabConfig(StrictModel):
    """A vocabulary fitted on the train split; rarer or excess values map to the OOV bucket."""

    min_freq: int = Field(1, ge=1)
    """values seen fewer times than this in train map to the OOV bucket"""
    max_size: int | None = Field(None, ge=1)
    """keep at most this many values, the most frequent (null: every value)"""


class HashConfig(StrictModel):
    """Feature hashing (MurmurHash3 x86 32-bit of the UTF-8 string, unsigned, modulo ``buckets``)."""

    buckets: int = Field(ge=2)
    """number of hash buckets (rows of the table besides missing and OOV)"""
    seed: int = Field(0, ge=0)
    """MurmurHash3 seed"""


class _Categorical(StrictModel):
    name: str = Field(min_length=1)
    """the feature's name (unique in the spec; also its embedding table's name unless `shared_table`)"""
    column: str | None = None
    """the raw column read (default: `name`)"""
    vocab: VocabConfig | None = None
    """index by a vocabulary fitted on train (the default when neither `vocab` nor `hash` is set)"""
    hash: HashConfig | None = None
    """index by feature hashing into a fixed number of buckets instead of a vocabulary"""
    embedding_dim: int = Field(8, ge=1)
    """width of the feature's embedding rows (encoder.embedding_dim may derive it from the table size)"""
    shared_table: str | None = None
    """features naming the same table share one embedding table (and one vocabulary)."""
    unseen: Literal["oov", "error"] = "oov"
    """a value outside the fitted vocabulary: the OOV bucket (with a warning above 5% of rows), or an error naming the column, for
    closed sets where a new value means broken data.
    """

    @model_validator(mode="after")
    def _one_index(self) -> "_Categorical":
        if self.vocab is not None and self.hash is not None:
            raise ValueError("give either 'vocab' or 'hash', not both")
        if self.unseen == "error" and (self.hash is not None or self.vocab_config != VocabConfig()):
            raise ValueError("unseen 'error' needs a full vocabulary (no hash, min_freq 1, no max_size)")
        return self

    @property
    def source(self) -> str:
        return self.column or self.name

    @property
    def table(self) -> str:
        return self.shared_table or self.name

    @property
    def vocab_config(self) -> VocabConfig:
        return self.vocab or VocabConfig()


def table_use(f: _Categorical) -> TableUse:
    """The table a categorical-like feature (categorical, sequence) indexes."""
    return TableUse(
        f.table, f.embedding_dim, None if f.hash is None else (f.hash.buckets, f.hash.seed),
        f.vocab_config.min_freq, f.vocab_config.max_size, shared=f.shared_table is not None,
    )


class CategoricalFeature(_Categorical):
    kind: Literal["categorical"]
    """`categorical`"""


def check_unseen(where: str, f: _Categorical, values: pl.Series, idx: np.ndarray) -> None:
    oov = idx == OOV
    if f.unseen == "error" and oov.any():
        examples = values.filter(pl.Series(oov)).unique().head(3).to_list()
        raise DataError(f"{where}: column {f.source!r} (feature {f.name!r}) has {int(oov.sum())} values unseen in train, e.g. {examples}")
    rate = float(oov.mean())
    if rate > 0.05:
        log.warning("%s: feature %r: %.1f%% of values are out of vocabulary", where, f.name, 100 * rate)


@register
class Categorical(FeatureKind[CategoricalFeature]):
    name = "categorical"
    spec = CategoricalFeature
    order = 0
    summary = "a string / integer column → vocabulary or hash-bucket index with its embedding table"

    def inputs(self, f: CategoricalFeature) -> list[InputSpec]:
        return [InputSpec(f.source, f.name, "categorical")]

    def table_uses(self, f: CategoricalFeature) -> list[TableUse]:
        return [table_use(f)]

    def table_values(self, f: CategoricalFeature, table: str, lf: pl.LazyFrame, schema: pl.Schema) -> pl.LazyFrame:
        return lf.select(pl.col(f.source).cast(pl.String).alias("value"))

    def layout(self, f: CategoricalFeature, fitted: Fitted, lay: Layout) -> None:
        lay.categorical.append((f.name, f.table))
        lay.tables[f.table] = (fitted.tables[f.table].size, f.embedding_dim)

    def transform(self, f: CategoricalFeature, df: pl.DataFrame, fitted: Fitted, where: str) -> Columns[np.ndarray]:
        idx = fitted.tables[f.table].lookup(df[f.source])
        check_unseen(where, f, df[f.source], idx)
        return Columns(categorical=[idx])

    def graph(self, f: CategoricalFeature, b: GraphBuilder, fitted: Fitted) -> Columns[str]:
        from recsys_mtl.features.graph import lookup

        return Columns(categorical=[lookup(b, f.source, fitted.tables[f.table], f.name)])
