"""``match``: the candidate against the user's history, as numbers (TorchEasyRec's match features).

Per row, with ``window`` = the first ``max_len`` entries of the history list (lists are read most
recent first, the order whose head a ``sequence`` feature keeps; text is split by ``separator`` as
for sequences), and items compared as strings (an integer id is its decimal string):

========== ===============================================================================
output     value before scaling
========== ===============================================================================
hit        1 when the candidate occurs in the window, else 0
count      occurrences of the candidate in the window (enters as signed log1p)
recency    1 / (1 + p), p = position of its most recent occurrence (0 = the newest entry);
           0 when it does not occur
length     non-missing entries in the window (enters as signed log1p)
========== ===============================================================================

With ``candidate_category`` and ``history_category`` (the category of each history item, aligned
with ``history``) the same hit / count / recency are computed at that coarser level
(``category_hit``, ``category_count``, ``category_recency``). Each chosen output is one column of the
numeric matrix, named ``<feature>.<output>``, standardised with train statistics (fitted by the
shared lazy numeric fit, stored in ``preprocessing.json``'s ``numeric`` under that name).

Missing values: a null or empty-string candidate matches nothing (hit 0, count 0, recency 0); a
null history is empty (length 0); null or empty items never match and are not counted in
``length`` but keep their position (as the server's padded string tensor does). An unseen id
(not in any vocabulary) matches like any other: the comparison is on raw values. A history longer
than ``max_len`` is cut to its first ``max_len`` entries (the server keeps the same entries, see
:attr:`serving.contract.InputSpec.kept`), so the work per row is bounded.

ONNX: ``Equal`` on strings needs opset >= 19 (the export uses 20).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import polars as pl
from pydantic import Field, model_validator

from recsys_mtl.features.base import Columns, FeatureKind, Fitted
from recsys_mtl.features.fitted import QUANTILE_STEPS, FittedNumeric
from recsys_mtl.features.layout import Layout
from recsys_mtl.features.numeric_fit import NumericColumn, fit_numeric_columns
from recsys_mtl.features.registry import register
from recsys_mtl.features.history_window import (CandidateHistory, check_columns, check_numeric_outputs, graph_window,
                                                 unique_outputs, window)
from serving.contract import InputSpec

if TYPE_CHECKING:
    from recsys_mtl.features.graph import GraphBuilder

Output = Literal["hit", "count", "recency", "length", "category_hit", "category_count", "category_recency"]
ITEM_OUTPUTS: tuple[Output, ...] = ("hit", "count", "recency", "length")
CATEGORY_OUTPUTS: tuple[Output, ...] = ("category_hit", "category_count", "category_recency")
#: outputs entering as signed log1p (unbounded counts)
_LOG1P = {"count", "length", "category_count"}


class MatchFeature(CandidateHistory):
    """Candidate-vs-history statistics (see the module docstring for each output)."""

    kind: Literal["match"]
    """`match`"""
    candidate_category: str | None = Field(None, min_length=1)
    """raw column of the candidate's category (the coarser level), with ``history_category``"""
    history_category: str | None = Field(None, min_length=1)
    """raw list column of the history items' categories, aligned with ``history``"""
    outputs: tuple[Output, ...] | None = Field(None, min_length=1)
    """which outputs to emit; default: every item output, and the category ones when categories are given"""

    @model_validator(mode="after")
    def _levels(self) -> "MatchFeature":
        if (self.candidate_category is None) != (self.history_category is None):
            raise ValueError("give both 'candidate_category' and 'history_category' (the coarser level), or neither")
        unique_outputs(self.outputs)
        if self.outputs is not None:
            bad = [o for o in self.outputs if o in CATEGORY_OUTPUTS and self.candidate_category is None]
            if bad:
                raise ValueError(f"outputs: {bad} need 'candidate_category' and 'history_category'")
        return self

    @property
    def chosen(self) -> tuple[Output, ...]:
        if self.outputs is not None:
            return self.outputs
        return ITEM_OUTPUTS + (CATEGORY_OUTPUTS if self.candidate_category is not None else ())


def _level(cand: pl.Expr, items: pl.Expr) -> dict[str, pl.Expr]:
    """hit / count / recency of ``cand`` (str, null = missing) in ``items`` (list[str]), float64, never null."""
    cand = pl.when(cand == "").then(None).otherwise(cand)
    # the candidate rides at the head of its row's list: list.eval cannot read another column
    eq = pl.concat_list(cand, items).list.eval((pl.element().slice(1) == pl.element().first()).fill_null(False))
    count = eq.list.sum().fill_null(0).cast(pl.Float64)
    first = eq.list.arg_max().cast(pl.Float64)
    recency = pl.when(count > 0).then(1.0 / (1.0 + first)).otherwise(0.0)
    return {"hit": (count > 0).cast(pl.Float64), "count": count, "recency": recency}


def raw_outputs(f: MatchFeature, schema: pl.Schema) -> dict[str, pl.Expr]:
    """output → float64 expression over the raw columns (before scaling)."""
    items = window(f, "match", f.history, schema[f.history])
    out = _level(pl.col(f.candidate).cast(pl.String), items)
    out["length"] = items.list.drop_nulls().list.len().fill_null(0).cast(pl.Float64)
    if f.candidate_category is not None and f.history_category is not None:
        cats = window(f, "match", f.history_category, schema[f.history_category])
        out |= {f"category_{k}": v for k, v in _level(pl.col(f.candidate_category).cast(pl.String), cats).items()}
    return {o: out[o] for o in f.chosen}


def _columns(f: MatchFeature, schema: pl.Schema) -> list[NumericColumn]:
    return [
        NumericColumn(name=f.column(o), source=f.history, what=f"match feature {f.name!r}, output {o!r}", raw=expr,
                      impute="zero", indicator=False, log1p=o in _LOG1P)
        for o, expr in raw_outputs(f, schema).items()
    ]


@register
class Match(FeatureKind[MatchFeature]):
    name = "match"
    spec = MatchFeature
    order = 3
    summary = ("candidate vs history: hit, count, recency of its last occurrence, history length "
               "(and the same at a category level) as numeric columns")
    plain = False

    def inputs(self, f: MatchFeature) -> list[InputSpec]:
        out = [InputSpec(f.candidate, f.name, "categorical"), InputSpec(f.history, f.name, "sequence", f.max_len, f.separator)]
        if f.candidate_category is not None and f.history_category is not None:
            out += [InputSpec(f.candidate_category, f.name, "categorical"),
                    InputSpec(f.history_category, f.name, "sequence", f.max_len, f.separator)]
        return out

    def check_frame(self, f: MatchFeature, df: pl.DataFrame, where: str) -> None:
        check_columns(f, "match", df, where, (f.candidate, f.candidate_category), (f.history, f.history_category))

    def fit(self, fs: list[MatchFeature], lf: pl.LazyFrame, where: str) -> dict[str, FittedNumeric]:
        schema = lf.collect_schema()
        return fit_numeric_columns([c for f in fs for c in _columns(f, schema)], lf, where)

    def shape_only(self, f: MatchFeature) -> dict[str, FittedNumeric]:
        return {
            f.column(o): FittedNumeric(f.column(o), f.history, 0.0, False, None, None, o in _LOG1P, 0.0, 1.0,
                                       quantiles=[i / QUANTILE_STEPS for i in range(QUANTILE_STEPS + 1)])
            for o in f.chosen
        }

    def check_state(self, f: MatchFeature, fitted: Fitted, path: Path) -> None:
        check_numeric_outputs(f, "match", f.chosen, fitted, path)

    def layout(self, f: MatchFeature, fitted: Fitted, lay: Layout) -> None:
        lay.numeric += [f.column(o) for o in f.chosen]

    def transform(self, f: MatchFeature, df: pl.DataFrame, fitted: Fitted, where: str) -> Columns[np.ndarray]:
        raw = df.select(**{o: e for o, e in raw_outputs(f, df.schema).items()})
        return Columns(numeric=[fitted.numeric[f.column(o)].transform(raw[o])[0] for o in f.chosen])

    def graph(self, f: MatchFeature, b: GraphBuilder, fitted: Fitted) -> Columns[str]:
        from recsys_mtl.features.graph import numeric

        raw = _graph_outputs(b, f)
        return Columns(numeric=[numeric(b, raw[o], fitted.numeric[f.column(o)], f.column(o))[0] for o in f.chosen])


def _graph_outputs(b: GraphBuilder, f: MatchFeature) -> dict[str, str]:
    """output → (B,) double tensor, from the raw inputs: :func:`raw_outputs` as ONNX operators."""
    from onnx import TensorProto

    from recsys_mtl.features.graph import ExportError

    if b.opset < 19:
        raise ExportError(f"match feature {f.name!r}: comparing strings needs ONNX opset >= 19, got {b.opset}")
    empty = b.const(np.array([[""]], dtype=object), "empty")
    axis1 = b.const(np.array([1], np.int64), "axis1")

    def window(column: str) -> str:
        return graph_window(b, column, f.max_len, f"{f.name}.{column}")

    def level(cand_column: str, items: str, prefix: str) -> dict[str, str]:
        cand = b.op("Unsqueeze", [cand_column, axis1], f"{prefix}.cand")
        present = b.op("Not", [b.op("Equal", [cand, empty], f"{prefix}.cand_empty")], f"{prefix}.cand_present")
        eq = b.op("And", [b.op("Equal", [items, cand], f"{prefix}.eq_raw"), present], f"{prefix}.eq")
        eqf = b.op("Cast", [eq], f"{prefix}.eqf", to=TensorProto.DOUBLE)
        count = b.op("ReduceSum", [eqf, axis1], f"{prefix}.count", keepdims=0)
        hit = b.op("Cast", [b.op("Greater", [count, b.const(np.array(0.0), "zero")], f"{prefix}.hitb")], f"{prefix}.hit",
                   to=TensorProto.DOUBLE)
        first = b.op("Cast", [b.op("ArgMax", [eqf], f"{prefix}.first_i", axis=1, keepdims=0, select_last_index=0)],
                     f"{prefix}.first", to=TensorProto.DOUBLE)
        one = b.const(np.array(1.0), "one")
        inv = b.op("Div", [one, b.op("Add", [one, first], f"{prefix}.1p")], f"{prefix}.inv")
        recency = b.op("Mul", [hit, inv], f"{prefix}.recency")
        return {"hit": hit, "count": count, "recency": recency}

    items = window(f.history)
    out = level(f.candidate, items, f"{f.name}.item")
    nonempty = b.op("Cast", [b.op("Not", [b.op("Equal", [items, empty], f"{f.name}.empty")], f"{f.name}.nonempty")],
                    f"{f.name}.nonemptyf", to=TensorProto.DOUBLE)
    out["length"] = b.op("ReduceSum", [nonempty, axis1], f"{f.name}.length", keepdims=0)
    if f.candidate_category is not None and f.history_category is not None:
        cats = window(f.history_category)
        out |= {f"category_{k}": v for k, v in level(f.candidate_category, cats, f"{f.name}.category").items()}
    return out
