"""The one preprocessing fit: polars lazy queries on the streaming engine.

:func:`fit_statistics` fits over any ``LazyFrame``: :meth:`Preprocessor.fit_files` gives it
``scan_parquet`` over a dataset larger than memory, :meth:`Preprocessor.fit` an in-memory frame. Each statistic
is one aggregation query; polars runs them with bounded memory (value counts are a group-by
over the distinct values; medians and quantiles need the column in memory, so each runs as its
own query over one column). Vocabularies are ordered by count descending, then value ascending.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from recsys_mtl.data.fitted import QUANTILE_STEPS, FittedNumeric, FittedTable
from recsys_mtl.data.sequences import sequence_items
from recsys_mtl.errors import DataError
from recsys_mtl.spec.features import CategoricalFeature, FeatureSpec, NumericFeature, SequenceFeature

ENGINE = "streaming"


FitStatistics = tuple[dict[str, FittedTable], dict[str, FittedNumeric], dict[str, tuple[float, float]]]


def fit_statistics(spec: FeatureSpec, lf: pl.LazyFrame, where: str) -> FitStatistics:
    """(tables, numeric columns, regression targets' (mean, std)) for ``spec`` over every row of
    ``lf`` (columns already checked): the arguments of a :class:`~recsys_mtl.data.preprocess.Preprocessor`."""
    return _fit_tables(spec, lf), _fit_numeric(spec, lf, where), _fit_targets(spec, lf)


def _fit_tables(spec: FeatureSpec, lf: pl.LazyFrame) -> dict[str, FittedTable]:
    members: dict[str, list[CategoricalFeature | SequenceFeature]] = {}
    for f in [*spec.categorical, *spec.sequences]:
        members.setdefault(f.table, []).append(f)
    tables: dict[str, FittedTable] = {}
    queries: dict[str, pl.LazyFrame] = {}
    schema = lf.collect_schema()
    for table, feats in members.items():
        first = feats[0]
        if first.hash is not None:
            tables[table] = FittedTable(table, hash_buckets=first.hash.buckets, hash_seed=first.hash.seed)
            continue
        parts = [_flat_strings(lf, f, schema[f.source]) for f in feats]
        queries[table] = pl.concat(parts).drop_nulls().group_by("value").agg(pl.len().alias("n"))
    counted = pl.collect_all(list(queries.values()), engine=ENGINE)
    for (table, _), counts in zip(queries.items(), counted):
        first = members[table][0]
        # count descending, then value ascending: a deterministic order whatever the row order
        counts = counts.sort(["n", "value"], descending=[True, False]).filter(pl.col("n") >= first.vocab_config.min_freq)
        if first.vocab_config.max_size is not None:
            counts = counts.head(first.vocab_config.max_size)
        tables[table] = FittedTable(table, vocab=counts["value"].to_list(), counts=counts["n"].to_list())
    return {t: tables[t] for t in members}  # spec order


def _flat_strings(lf: pl.LazyFrame, f: CategoricalFeature | SequenceFeature, dtype: pl.DataType) -> pl.LazyFrame:
    """One string column ``value``: the categorical's values, or every item of the sequence's rows."""
    if isinstance(f, SequenceFeature):
        out = lf.select(sequence_items(f, dtype).alias("value")).explode("value", empty_as_null=False, keep_nulls=False)
    else:
        out = lf.select(pl.col(f.source).alias("value"))
    return out.select(pl.col("value").cast(pl.String))


def _raw(f: NumericFeature) -> pl.Expr:
    return pl.col(f.source).cast(pl.Float64).fill_nan(None)


def _transformed(f: NumericFeature, impute: float) -> pl.Expr:
    """The expression form of FittedNumeric.apply: impute, clip, signed log1p."""
    x = _raw(f).fill_null(impute)
    if f.clip is not None and (f.clip.min is not None or f.clip.max is not None):
        x = x.clip(f.clip.min, f.clip.max)
    if f.log1p:
        x = x.sign() * x.abs().log1p()
    return x


def _aggregate(lf: pl.LazyFrame, exprs: list[pl.Expr]) -> dict[str, float]:
    """One streaming query of scalar aggregations → {alias: value}."""
    return lf.select(exprs).collect(engine=ENGINE).row(0, named=True)


def _fit_numeric(spec: FeatureSpec, lf: pl.LazyFrame, where: str) -> dict[str, FittedNumeric]:
    if not spec.numeric:
        return {}
    # pass 1: non-null counts and the impute statistics
    first = [_raw(f).count().alias(f"{f.name}:count") for f in spec.numeric]
    first += [_raw(f).is_infinite().sum().alias(f"{f.name}:inf") for f in spec.numeric]
    first += [_raw(f).mean().alias(f"{f.name}:mean") for f in spec.numeric if f.missing.impute == "mean"]
    stats = _aggregate(lf, first)
    # exact medians / quantiles hold their column in memory: one column per query bounds the fit's
    # memory (counts and sums stream, so they are batched in one query instead)
    for f in spec.numeric:
        if f.missing.impute == "median":
            stats |= _aggregate(lf, [_raw(f).median().alias(f"{f.name}:median")])
    fitted: dict[str, FittedNumeric] = {}
    for f in spec.numeric:
        if stats[f"{f.name}:inf"]:  # refused as in check_frame: ±inf would poison the statistics
            raise DataError(f"{where}: column {f.source!r} (numeric feature {f.name!r}) has {int(stats[f'{f.name}:inf'])} "
                            "infinite value(s); write missing values as null or NaN")
        if stats[f"{f.name}:count"] == 0:
            raise DataError(f"{where}: column {f.source!r} (numeric feature {f.name!r}) is entirely null")
        policy = f.missing
        impute = {
            "mean": lambda: float(stats[f"{f.name}:mean"]),
            "median": lambda: float(stats[f"{f.name}:median"]),
            "zero": lambda: 0.0,
            "constant": lambda: float(policy.value),  # type: ignore[arg-type]
        }[policy.impute]()
        fitted[f.name] = FittedNumeric(
            name=f.name, source=f.source, impute_value=impute, indicator=policy.indicator,
            clip_min=f.clip.min if f.clip else None, clip_max=f.clip.max if f.clip else None,
            log1p=f.log1p, mean=0.0, std=1.0,
        )
    # pass 2: statistics of the transformed values (numpy's defaults: linear quantiles, ddof 0)
    second: list[pl.Expr] = []
    stats = {}
    for f in spec.numeric:
        x = _transformed(f, fitted[f.name].impute_value)
        if f.quantile_buckets is not None:
            qs = np.linspace(0, 1, f.quantile_buckets + 1)[1:-1]  # one column per query, as in pass 1
            stats |= _aggregate(
                lf, [x.quantile(float(q), interpolation="linear").alias(f"{f.name}:q{i}") for i, q in enumerate(qs)]
            )
        elif f.standardize:
            second += [x.mean().alias(f"{f.name}:mean"), x.std(ddof=0).alias(f"{f.name}:std")]
    if second:
        stats |= _aggregate(lf, second)
    for f in spec.numeric:
        fit = fitted[f.name]
        if f.quantile_buckets is not None:
            edges = [stats[f"{f.name}:q{i}"] for i in range(f.quantile_buckets - 1)]
            fit.boundaries = sorted(set(float(e) for e in edges))
            continue
        if f.standardize:
            std = float(stats[f"{f.name}:std"])
            fit.mean = float(stats[f"{f.name}:mean"])
            fit.std = std if std > 1e-12 and math.isfinite(std) else 1.0
        # pass 3: the quantiles piecewise-linear embeddings bin on, one column per query
        x = (_transformed(f, fit.impute_value) - fit.mean) / fit.std
        qs = np.linspace(0, 1, QUANTILE_STEPS + 1)
        row = _aggregate(lf, [x.quantile(float(q), interpolation="linear").alias(f"q{i}") for i, q in enumerate(qs)])
        fit.quantiles = [float(row[f"q{i}"]) for i in range(len(qs))]
    return fitted


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
