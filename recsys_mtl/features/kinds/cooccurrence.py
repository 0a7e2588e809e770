"""``cooccurrence``: how similar the candidate is to the user's history, by item-to-item co-occurrence.

Fit (train split only): ``window`` = the first ``max_len`` entries of each row's history list (most
recent first, read as a ``match`` feature reads it: text split by ``separator``, items compared as
strings, null / "" entries are missing). The ``top_items`` items occurring most often in the
windows (ties by value) are kept; every other item is *unknown*. Two known items *co-occur* when
they sit in the same row's window; ``C[a, b] = Σ_rows m_a · m_b`` (a ≠ b, m = the item's
occurrences in that window) is stored sparse in ``preprocessing.json``'s ``pairs`` (integers, so a
streamed fit equals the in-memory fit exactly). The similarity of two known items is the cosine of
their rows of ``C`` (diagonal zero): ``S = U Uᵀ``, ``U`` = ``C`` with each row L2-normalised, a dense
(V, V) float32 table, V <= ``top_items``; S[a, a] = 1 for an item with any co-occurrence, and
S = 0 for an unknown item or a known one without co-occurrences.

Per row, with ``s_p = S[candidate, window[p]]`` (0 when either is unknown or missing), n = the
non-missing entries of the window and ``w_p = 1 / (1 + p)`` (p = 0 is the newest entry):

========= ===================================================================
output    value before scaling
========= ===================================================================
mean      Σ_p s_p / max(n, 1) (unknown items count in n, with similarity 0)
max       max_p s_p, 0 for an empty window
weighted  Σ_p w_p s_p / Σ_{p non-missing} w_p, 0 for an empty window
kernels   one column ``kernel<k>`` per centre ``mu_k`` of ``kernels``:
          Σ_p exp(-(s_p - mu_k)² / (2 sigma²)) / max(n, 1), the soft share of the window
          near mu_k (K-NRM kernel pooling, :mod:`recsys_mtl.features.kernel_pooling`)
========= ===================================================================

Each output is one numeric column ``<feature>.<output>`` (``kernels``: one per kernel), standardised with train statistics.
Computed by one polars query (explode the window, join the similarity table, aggregate per row)
for the fit and the transform, and by ``LabelEncoder`` + ``Gather`` on the (V + 1)² table in the ONNX
graph (row / column V = unknown, all zeros), which the server runs as it is.

Memory: the stored counts grow with the co-occurring pairs (at most V (V - 1) / 2); the similarity
table is (V + 1)² float32 in the transform and in the exported graph (2000 items: 16 MB).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import polars as pl
from pydantic import Field, model_validator

from recsys_mtl.errors import DataError
from recsys_mtl.features.base import Columns, FeatureKind, Fitted
from recsys_mtl.features.fitted import QUANTILE_STEPS, FittedNumeric, FittedPairCounts
from recsys_mtl.features.kernel_pooling import Kernels, graph_kernel_shares, kernel_sums
from recsys_mtl.features.layout import Layout
from recsys_mtl.features.numeric_fit import ENGINE, NumericColumn, fit_numeric_columns
from recsys_mtl.features.registry import register
from recsys_mtl.features.history_window import (CandidateHistory, check_columns, check_numeric_outputs, graph_window,
                                                 unique_outputs, window)
from serving.contract import InputSpec

if TYPE_CHECKING:
    from recsys_mtl.features.graph import GraphBuilder

Output = Literal["mean", "max", "weighted", "kernels"]
OUTPUTS: tuple[Output, ...] = ("mean", "max", "weighted")
#: the largest ``top_items``: the dense similarity table is (V + 1)² float32 (5000 items: 100 MB)
MAX_TOP_ITEMS = 5000


class CooccurrenceFeature(CandidateHistory):
    """Similarity of the candidate to the history by co-occurrence (see the module docstring)."""

    kind: Literal["cooccurrence"]
    """`cooccurrence`"""
    top_items: int = Field(2000, ge=1, le=MAX_TOP_ITEMS)
    """the most frequent history items (train windows) that get similarities; rarer and unseen items get 0"""
    outputs: tuple[Output, ...] | None = Field(None, min_length=1)
    """which outputs to emit (mean, max, weighted, kernels); default mean, max and weighted"""
    kernels: Kernels = Field(default_factory=Kernels)
    """the RBF kernels of the `kernels` output (K-NRM kernel pooling): one column `<name>.kernel<k>` per centre"""

    @model_validator(mode="after")
    def _check(self) -> "CooccurrenceFeature":
        unique_outputs(self.outputs)
        if "kernels" in self.model_fields_set and "kernels" not in self.chosen:
            raise ValueError("kernels: set, but outputs does not name 'kernels' (add it to outputs or drop kernels)")
        return self

    @property
    def chosen(self) -> tuple[Output, ...]:
        return self.outputs if self.outputs is not None else OUTPUTS

    @property
    def names(self) -> list[str]:
        """The output columns' names in order: ``chosen`` with ``kernels`` expanded to ``kernel0`` ..."""
        return [n for o in self.chosen for n in (self.kernels.names() if o == "kernels" else [o])]


def _window(f: CooccurrenceFeature, dtype: pl.DataType) -> pl.Expr:
    return window(f, "cooccurrence", f.history, dtype)


def fit_pairs(f: CooccurrenceFeature, lf: pl.LazyFrame) -> FittedPairCounts:
    """The ``top_items`` most frequent window items and their co-occurrence counts over every row of ``lf``."""
    window = _window(f, lf.collect_schema()[f.history]).alias("item")
    long = lf.select(window).with_row_index("row").explode("item").drop_nulls("item")
    top = (long.group_by("item").agg(pl.len().alias("n")).sort(["n", "item"], descending=[True, False])
           .head(f.top_items).collect(engine=ENGINE))
    keys = top["item"].to_list()
    index = pl.LazyFrame({"item": keys, "k": list(range(len(keys)))}, schema={"item": pl.String, "k": pl.Int64})
    per_row = long.join(index, on="item").group_by("row", "k").agg(pl.len().cast(pl.Int64).alias("m"))
    pairs = (per_row.join(per_row, on="row", suffix="_b").filter(pl.col("k") < pl.col("k_b"))
             .group_by("k", "k_b").agg((pl.col("m") * pl.col("m_b")).sum().alias("c"))
             .sort("k", "k_b").collect(engine=ENGINE))
    return FittedPairCounts(f.name, f.history, keys, pairs["k"].to_list(), pairs["k_b"].to_list(), pairs["c"].to_list())


def similarity(p: FittedPairCounts) -> np.ndarray:
    """(V + 1, V + 1) float32 cosine similarity of the keys' co-occurrence rows; row / column V
    (unknown or missing) is zero."""
    v = len(p.keys)
    co = np.zeros((v, v), np.float64)
    first, second = np.asarray(p.first, np.int64), np.asarray(p.second, np.int64)
    co[first, second] = p.counts
    co[second, first] = p.counts
    unit = co / np.maximum(np.linalg.norm(co, axis=1, keepdims=True), 1e-12)
    out = np.zeros((v + 1, v + 1), np.float32)
    out[:v, :v] = unit @ unit.T
    return out


def _similarity_frame(p: FittedPairCounts) -> pl.LazyFrame:
    """(cand, item, sim) for every non-zero similarity: the table the polars path joins."""
    sim = similarity(p)[:-1, :-1]
    a, b = np.nonzero(sim)
    keys = np.asarray(p.keys, dtype=object)
    return pl.LazyFrame({"cand": keys[a].tolist(), "item": keys[b].tolist(), "sim": sim[a, b].astype(np.float64)},
                        schema={"cand": pl.String, "item": pl.String, "sim": pl.Float64})


def raw_frame(f: CooccurrenceFeature, lf: pl.LazyFrame, p: FittedPairCounts) -> pl.LazyFrame:
    """One row per row of ``lf``, in order: a float64 column per chosen output, before scaling."""
    schema = lf.collect_schema()
    cand = pl.col(f.candidate).cast(pl.String)
    rows = lf.select(pl.when(cand == "").then(None).otherwise(cand).alias("cand"), _window(f, schema[f.history]).alias("item"))
    long = (rows.with_row_index("row").with_columns(pos=pl.int_ranges(0, pl.col("item").list.len(), dtype=pl.Int64))
            .explode("item", "pos", empty_as_null=True, keep_nulls=True)
            .join(_similarity_frame(p), on=["cand", "item"], how="left"))
    sim = pl.col("sim").fill_null(0.0)
    valid = pl.col("item").is_not_null().cast(pl.Float64)
    weight = (1.0 / (1.0 + pl.col("pos").cast(pl.Float64))).fill_null(0.0)
    kernels = kernel_sums(f.kernels, sim, valid) if "kernels" in f.chosen else {}
    agg = long.group_by("row").agg(
        s=sim.sum(), n=valid.sum(), top=sim.max(), ws=(weight * sim).sum(), wn=(weight * valid).sum(), **kernels,
    ).sort("row")
    n1 = pl.max_horizontal(pl.col("n"), pl.lit(1.0))
    out = {
        "mean": pl.col("s") / n1,
        "max": pl.max_horizontal(pl.col("top").fill_null(0.0), pl.lit(0.0)),
        "weighted": pl.col("ws") / pl.max_horizontal(pl.col("wn"), pl.lit(1e-300)),
        **{k: pl.col(k) / n1 for k in kernels},
    }
    return agg.select(**{o: out[o] for o in f.names})


@register
class Cooccurrence(FeatureKind[CooccurrenceFeature]):
    name = "cooccurrence"
    spec = CooccurrenceFeature
    order = 8
    summary = ("candidate vs history by item-to-item co-occurrence fitted on train: mean, max and "
               "recency-weighted cosine similarity and kernel-pooled shares as numeric columns")
    plain = False

    def inputs(self, f: CooccurrenceFeature) -> list[InputSpec]:
        return [InputSpec(f.candidate, f.name, "categorical"), InputSpec(f.history, f.name, "sequence", f.max_len, f.separator)]

    def check_frame(self, f: CooccurrenceFeature, df: pl.DataFrame, where: str) -> None:
        check_columns(f, "cooccurrence", df, where, (f.candidate,), (f.history,))

    def fit(self, fs: list[CooccurrenceFeature], lf: pl.LazyFrame, where: str) -> dict[str, FittedNumeric]:
        return self.fit_all(fs, lf, where)[0]

    def fit_all(self, fs: list[CooccurrenceFeature], lf: pl.LazyFrame,
                where: str) -> tuple[dict[str, FittedNumeric], dict[str, FittedPairCounts]]:
        pairs = {f.name: fit_pairs(f, lf) for f in fs}
        for f in fs:
            if not pairs[f.name].keys:
                raise DataError(f"{where}: column {f.history!r} (cooccurrence feature {f.name!r}) has no items in the "
                                f"first max_len={f.max_len} entries of any row: nothing to learn similarities from")
        numeric: dict[str, FittedNumeric] = {}
        for f in fs:
            raw = raw_frame(f, lf, pairs[f.name])
            columns = [NumericColumn(name=f.column(o), source=f.history, what=f"cooccurrence feature {f.name!r}, output {o!r}",
                                     raw=pl.col(o), impute="zero") for o in f.names]
            numeric |= fit_numeric_columns(columns, raw, where)
        return numeric, pairs

    def shape_only(self, f: CooccurrenceFeature) -> dict[str, FittedNumeric]:
        return {
            f.column(o): FittedNumeric(f.column(o), f.history, 0.0, False, None, None, False, 0.0, 1.0,
                                       quantiles=[i / QUANTILE_STEPS for i in range(QUANTILE_STEPS + 1)])
            for o in f.names
        }

    def check_state(self, f: CooccurrenceFeature, fitted: Fitted, path: Path) -> None:
        check_numeric_outputs(f, "cooccurrence", f.names, fitted, path)
        p = fitted.pairs.get(f.name)
        if p is None:
            raise DataError(f"{path}: pairs: no entry for cooccurrence feature {f.name!r}")
        v = len(p.keys)
        if v > f.top_items or len(set(p.keys)) != v or "" in p.keys:
            raise DataError(f"{path}: pairs.{f.name}.keys: needs at most top_items={f.top_items} distinct non-empty keys")
        if not len(p.first) == len(p.second) == len(p.counts):
            raise DataError(f"{path}: pairs.{f.name}: first, second and counts differ in length")
        if any(not 0 <= a < b < v for a, b in zip(p.first, p.second)) or any(c <= 0 for c in p.counts):
            raise DataError(f"{path}: pairs.{f.name}: needs 0 <= first < second < {v} and counts > 0")

    def layout(self, f: CooccurrenceFeature, fitted: Fitted, lay: Layout) -> None:
        lay.numeric += [f.column(o) for o in f.names]

    def transform(self, f: CooccurrenceFeature, df: pl.DataFrame, fitted: Fitted, where: str) -> Columns[np.ndarray]:
        raw = raw_frame(f, df.lazy(), fitted.pairs[f.name]).collect()
        return Columns(numeric=[fitted.numeric[f.column(o)].transform(raw[o])[0] for o in f.names])

    def graph(self, f: CooccurrenceFeature, b: GraphBuilder, fitted: Fitted) -> Columns[str]:
        from recsys_mtl.features.graph import numeric

        raw = _graph_outputs(b, f, fitted.pairs[f.name])
        return Columns(numeric=[numeric(b, raw[o], fitted.numeric[f.column(o)], f.column(o))[0] for o in f.names])


def _graph_outputs(b: GraphBuilder, f: CooccurrenceFeature, p: FittedPairCounts) -> dict[str, str]:
    """output → (B,) double tensor from the raw inputs: :func:`raw_frame` as ONNX operators."""
    from onnx import TensorProto

    from recsys_mtl.features.graph import ML_DOMAIN

    v = len(p.keys)
    hint = f"{f.name}.cooc"
    empty = b.const(np.array([[""]], dtype=object), "empty")
    axis1 = b.const(np.array([1], np.int64), "axis1")
    items = graph_window(b, f.history, f.max_len, hint)

    def index(x: str, what: str) -> str:
        # known key → 0..V-1; unknown, missing ("" is never a key) → V, the zero row / column
        return b.op("LabelEncoder", [x], f"{hint}.{what}", domain=ML_DOMAIN, keys_strings=list(p.keys),
                    values_int64s=list(range(v)), default_int64=v)

    cand = b.op("Unsqueeze", [index(f.candidate, "cand"), axis1], f"{hint}.cand_col")
    flat = b.op("Add", [b.op("Mul", [cand, b.const(np.array(v + 1, np.int64), "width")], f"{hint}.row"),
                        index(items, "items")], f"{hint}.flat")
    table = b.const(similarity(p).reshape(-1), f"{hint}.table")
    sims = b.op("Cast", [b.op("Gather", [table, flat], f"{hint}.gather", axis=0)], f"{hint}.sims", to=TensorProto.DOUBLE)
    valid = b.op("Cast", [b.op("Not", [b.op("Equal", [items, empty], f"{hint}.missing")], f"{hint}.present")],
                 f"{hint}.valid", to=TensorProto.DOUBLE)
    # w_p = 1 / (1 + p), cut to the window's width (the pad column has valid = 0 and sim = 0)
    width = b.op("Shape", [items], f"{hint}.width", start=1, end=2)
    weights_all = b.const(1.0 / (1.0 + np.arange(f.max_len + 1, dtype=np.float64)), f"{hint}.weights")
    weights = b.op("Slice", [weights_all, b.const(np.array([0], np.int64), "start"), width], f"{hint}.w")

    def total(x: str, what: str) -> str:
        return b.op("ReduceSum", [x, axis1], f"{hint}.{what}", keepdims=0)

    s, n = total(sims, "s"), total(valid, "n")
    ws = total(b.op("Mul", [sims, weights], f"{hint}.wsims"), "ws")
    wn = total(b.op("Mul", [valid, weights], f"{hint}.wvalid"), "wn")
    n1 = b.op("Max", [n, b.const(np.array(1.0), "one_d")], f"{hint}.n1")
    kernels = graph_kernel_shares(b, f.kernels, sims, valid, n1, f"{hint}.kernels") if "kernels" in f.chosen else {}
    out = {
        "mean": b.op("Div", [s, n1], f"{hint}.mean"),
        "max": b.op("ReduceMax", [sims, axis1], f"{hint}.max", keepdims=0),
        "weighted": b.op("Div", [ws, b.op("Max", [wn, b.const(np.array(1e-300), "tiny")], f"{hint}.wn1")], f"{hint}.weighted"),
        **kernels,
    }
    return {o: out[o] for o in f.names}
