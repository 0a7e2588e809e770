"""Fitting and checking the embedding tables that categorical-like kinds index, over every kind.

Features naming one table share its vocabulary: the values of all of them are counted together,
whatever their kind, so a sequence of item ids and the candidate item id index one table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from recsys_mtl.errors import DataError
from recsys_mtl.features.base import TableUse
from recsys_mtl.features.fitted import FittedTable
from recsys_mtl.features.numeric_fit import ENGINE
from recsys_mtl.features.registry import for_each


def table_members(features: list[Any]) -> dict[str, list[tuple[Any, Any, TableUse]]]:
    """table → (kind, feature, use) of every feature indexing it, in channel order."""
    members: dict[str, list[tuple[Any, Any, TableUse]]] = {}
    for kind, f in for_each(features):
        for use in kind.table_uses(f):
            members.setdefault(use.table, []).append((kind, f, use))
    return members


def fit_tables(features: list[Any], lf: pl.LazyFrame) -> dict[str, FittedTable]:
    """Every table: a hashing rule, or a vocabulary ordered by count descending, then value ascending
    (a deterministic order whatever the row order), one streaming group-by per table."""
    members = table_members(features)
    tables: dict[str, FittedTable] = {}
    queries: dict[str, pl.LazyFrame] = {}
    schema = lf.collect_schema()
    for table, uses in members.items():
        first = uses[0][2]
        if first.hash is not None:
            tables[table] = FittedTable(table, hash_buckets=first.hash[0], hash_seed=first.hash[1])
            continue
        parts = [kind.table_values(f, table, lf, schema) for kind, f, _ in uses]
        queries[table] = pl.concat(parts).drop_nulls().group_by("value").agg(pl.len().alias("n"))
    counted = pl.collect_all(list(queries.values()), engine=ENGINE)
    for (table, _), counts in zip(queries.items(), counted):
        first = members[table][0][2]
        counts = counts.sort(["n", "value"], descending=[True, False]).filter(pl.col("n") >= first.min_freq)
        if first.max_size is not None:
            counts = counts.head(first.max_size)
        tables[table] = FittedTable(table, vocab=counts["value"].to_list(), counts=counts["n"].to_list())
    return {t: tables[t] for t in members}


def shape_only_tables(features: list[Any]) -> dict[str, FittedTable]:
    return {t: FittedTable(t, hash_buckets=2) for t in table_members(features)}


def check_tables(features: list[Any], tables: dict[str, FittedTable], path: Path) -> None:
    """A loaded state holds a usable entry for every table a feature indexes."""
    for table, uses in table_members(features).items():
        t = tables.get(table)
        if t is None:
            raise DataError(f"{path}: tables: no entry for table {table!r} (feature {uses[0][1].name!r})")
        if (t.vocab is None) == (t.hash_buckets is None) or (t.hash_buckets is not None and t.hash_buckets < 1):
            raise DataError(f"{path}: tables.{table}: needs either a vocab or hash_buckets >= 1")
        if t.counts is not None and (t.vocab is None or len(t.counts) != len(t.vocab) or min(t.counts, default=1) < 1):
            raise DataError(f"{path}: tables.{table}.counts: needs one count >= 1 per vocab entry")
