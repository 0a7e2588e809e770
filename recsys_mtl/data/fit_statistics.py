"""The one preprocessing fit: polars lazy queries on the streaming engine.

:func:`fit_statistics` fits over any ``LazyFrame``: :meth:`Preprocessor.fit_files` gives it
``scan_parquet`` over a dataset larger than memory, :meth:`Preprocessor.fit` an in-memory frame. Each statistic
is one aggregation query; polars runs them with bounded memory (value counts are a group-by
over the distinct values; medians and quantiles need the column in memory, so each runs as its
own query over one column). Vocabularies are ordered by count descending, then value ascending.
"""

from __future__ import annotations

import math

import polars as pl

from recsys_mtl.features.fitted import FittedNumeric, FittedPairCounts, FittedTable
from recsys_mtl.features.numeric_fit import ENGINE, aggregate as _aggregate
from recsys_mtl.features.registry import grouped
from recsys_mtl.features.tables import fit_tables
from recsys_mtl.spec.features import FeatureSpec

__all__ = ["ENGINE", "FitStatistics", "fit_statistics"]


FitStatistics = tuple[dict[str, FittedTable], dict[str, FittedNumeric], dict[str, tuple[float, float]],
                      dict[str, FittedPairCounts]]


def fit_statistics(spec: FeatureSpec, lf: pl.LazyFrame, where: str) -> FitStatistics:
    """(tables, numeric columns, regression targets' (mean, std), pair-count tables) for ``spec`` over
    every row of ``lf`` (columns already checked): the arguments of a :class:`~recsys_mtl.data.preprocess.Preprocessor`.
    Tables are fitted over every kind indexing them; numeric statistics and pair counts by each kind's own lazy fit."""
    numeric: dict[str, FittedNumeric] = {}
    pairs: dict[str, FittedPairCounts] = {}
    for kind, fs in grouped(spec.features):
        kind_numeric, kind_pairs = kind.fit_all(fs, lf, where)
        numeric |= kind_numeric
        pairs |= kind_pairs
    return fit_tables(spec.features, lf), numeric, _fit_targets(spec, lf), pairs


def _fit_targets(spec: FeatureSpec, lf: pl.LazyFrame) -> dict[str, tuple[float, float]]:
    """Regression task → (mean, std) of its train labels over the rows its mask counts, sample-weighted."""
    out: dict[str, tuple[float, float]] = {}
    for t in spec.tasks:
        if t.type != "regression":
            continue
        y = pl.sql_expr(t.label).cast(pl.Float64)
        w = y.is_not_null().cast(pl.Float64)
        if t.mask is not None:
            w = w * pl.sql_expr(t.mask).fill_null(False).cast(pl.Float64)
        if t.sample_weight is not None:
            w = w * pl.sql_expr(t.sample_weight).cast(pl.Float64).fill_null(0)
        y = y.fill_null(0)
        row = _aggregate(lf, [(w * y).sum().alias("wy"), (w * y * y).sum().alias("wyy"), w.sum().alias("w")])
        if not row["w"]:
            continue  # no labelled rows: the transform names the task
        mean = row["wy"] / row["w"]
        std = math.sqrt(max(row["wyy"] / row["w"] - mean * mean, 0.0))
        out[t.name] = (mean, std if std > 1e-12 and math.isfinite(std) else 1.0)
    return out
