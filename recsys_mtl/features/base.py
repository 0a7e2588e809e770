"""The contract of a feature kind: one class per kind owns everything about it.

A kind *emits into the existing encoded channels* (see :class:`Columns`): categorical index columns
(each with its embedding table), numeric float columns and their missing indicators, and sequence
index tensors. The encoder, the models and their state dicts therefore stay as they are, and a new
kind usually needs no encoder code. Channel order: kinds in registry order (``order``), features in
spec order within a kind; indicators follow every numeric value column (as before the registry).

What a kind supplies (each a method of :class:`FeatureKind`):

* its pydantic spec class (``spec``, with ``kind: Literal[...]``) and cross-feature checks
  (:meth:`~FeatureKind.check_in_spec`);
* the raw columns it reads and how the server takes them (:meth:`~FeatureKind.inputs`, torch-free
  :class:`serving.contract.InputSpec`, keyed by raw input type);
* its fit, one lazy polars code path for in-memory and streamed data: tables it indexes
  (:meth:`~FeatureKind.table_uses` + :meth:`~FeatureKind.table_values`, fitted together with the
  other features sharing the table) and numeric statistics (:meth:`~FeatureKind.fit`);
* its transform (:meth:`~FeatureKind.transform`, polars → numpy) and the same as an ONNX subgraph
  from the raw columns (:meth:`~FeatureKind.graph`);
* its place in the :class:`~recsys_mtl.features.layout.Layout` (what the encoder, the tree
  baselines and the importance / drift diagnostics read: numeric columns reach trees as numbers,
  table columns as categories).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Sequence, TypeVar

import numpy as np
import polars as pl

from recsys_mtl.features.fitted import FittedNumeric, FittedPairCounts, FittedTable
from recsys_mtl.features.layout import Layout
from recsys_mtl.strict import StrictModel
from serving.contract import InputSpec

if TYPE_CHECKING:
    from recsys_mtl.features.graph import GraphBuilder

T = TypeVar("T")
S = TypeVar("S", bound=StrictModel)


@dataclass
class Columns(Generic[T]):
    """What one feature puts into each encoded channel: numpy arrays (transform, (N,) or (N, L)) or
    graph tensor names (ONNX)."""

    #: (N,) int64 table indices, columns of the ``categorical`` matrix
    categorical: list[T] = field(default_factory=list)
    #: (N,) float values, columns of the ``numeric`` matrix
    numeric: list[T] = field(default_factory=list)
    #: (N,) 0/1 missing indicators, appended to ``numeric`` after every kind's values
    indicators: list[T] = field(default_factory=list)
    #: feature name → (N, max_len) int64 indices (the ``seq.<name>`` tensors)
    sequences: dict[str, T] = field(default_factory=dict)

    def extend(self, other: "Columns[T]") -> None:
        self.categorical += other.categorical
        self.numeric += other.numeric
        self.indicators += other.indicators
        self.sequences.update(other.sequences)


@dataclass(frozen=True)
class TableUse:
    """One embedding table a feature indexes: features naming the same table share it (and its
    vocabulary), so they must agree on the index rule and width."""

    table: str
    embedding_dim: int
    #: hashing (buckets, seed), or None for a vocabulary fitted on train
    hash: tuple[int, int] | None
    min_freq: int = 1
    max_size: int | None = None
    #: whether this use is named explicitly (``shared_table``); only those are checked for agreement
    shared: bool = False


@dataclass
class Fitted:
    """What a preprocessing fit learned (``preprocessing.json``'s ``tables``, ``numeric`` and ``pairs``)."""

    tables: dict[str, FittedTable]
    numeric: dict[str, FittedNumeric]
    #: feature → its pair-count table (kinds that learn item-to-item statistics)
    pairs: dict[str, FittedPairCounts] = field(default_factory=dict)


class FeatureKind(ABC, Generic[S]):
    """One feature kind; subclasses are registered with :func:`recsys_mtl.features.registry.register`."""

    #: the spec's ``kind:`` value
    name: ClassVar[str]
    #: the pydantic spec class (a ``kind: Literal[name]`` field)
    spec: ClassVar[type[StrictModel]]
    #: position of this kind's columns in each encoded channel (existing kinds keep their layout)
    order: ClassVar[int]
    #: one line for ``recsys-mtl list``
    summary: ClassVar[str]
    #: True when the feature is *the* reader of its own column (``column`` / ``name``): two plain
    #: features may not read the same column; derived kinds (match, cross) read other features' columns
    plain: ClassVar[bool] = True

    # ------------------------------------------------------------------ spec
    @abstractmethod
    def inputs(self, f: S) -> list[InputSpec]:
        """The raw columns ``f`` reads, each with the raw input type the server takes it as."""

    def plain_source(self, f: S) -> str | None:
        """The column a plain feature owns (checked unique among plain features)."""
        return getattr(f, "source", None) if self.plain else None

    def check_in_spec(self, f: S, features: Sequence[StrictModel], i: int) -> None:
        """Checks against the other features (``features[i]`` is ``f``); raise ValueError naming the field."""

    # ------------------------------------------------------------------ fit
    def table_uses(self, f: S) -> list[TableUse]:
        return []

    def table_values(self, f: S, table: str, lf: pl.LazyFrame, schema: pl.Schema) -> pl.LazyFrame:
        """One string column ``value`` holding every value of ``f`` that ``table``'s vocabulary counts."""
        raise NotImplementedError(f"{self.name}: table_values")

    def check_frame(self, f: S, df: pl.DataFrame, where: str) -> None:
        """The columns ``f`` reads have usable dtypes and values (presence is checked before)."""

    def fit(self, fs: list[S], lf: pl.LazyFrame, where: str) -> dict[str, FittedNumeric]:
        """Numeric statistics of this kind's features ``fs`` over every row of ``lf``: one lazy query path
        for in-memory and streamed data."""
        return {}

    def fit_all(self, fs: list[S], lf: pl.LazyFrame, where: str) -> tuple[dict[str, FittedNumeric], dict[str, FittedPairCounts]]:
        """Everything ``fs`` learn over ``lf``: numeric statistics and pair-count tables (a kind whose
        numbers are computed from a table it fits overrides this; the default is :meth:`fit` alone)."""
        return self.fit(fs, lf, where), {}

    def shape_only(self, f: S) -> dict[str, FittedNumeric]:
        """Statistics-free numeric entries with the layout a fit would give (model checks before data)."""
        return {}

    def check_state(self, f: S, fitted: Fitted, path: Path) -> None:
        """A loaded ``preprocessing.json`` holds a usable entry for ``f``; DataError naming the field."""

    # ------------------------------------------------------------------ layout, transform, graph
    @abstractmethod
    def layout(self, f: S, fitted: Fitted, lay: Layout) -> None:
        """Append ``f``'s columns (and tables) to ``lay``, in the order :meth:`transform` emits them."""

    @abstractmethod
    def transform(self, f: S, df: pl.DataFrame, fitted: Fitted, where: str) -> Columns[np.ndarray]:
        """Raw rows → ``f``'s encoded columns (numpy)."""

    @abstractmethod
    def graph(self, f: S, b: "GraphBuilder", fitted: Fitted) -> Columns[str]:
        """The ONNX subgraph of :meth:`transform` from the raw graph inputs (named as the columns)."""

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "summary": self.summary}

