"""Input drift of new rows against the training statistics an export carries (its
``preprocessing.json``): out-of-vocabulary share per categorical / sequence input, population
stability index (PSI) per numeric input.

PSI (Karakoulas' stability index, as credit scoring uses it): ``Σ_b (a_b − e_b) · ln(a_b / e_b)``
over bins ``b``, ``e_b`` the training share and ``a_b`` the new share, each floored at
:data:`PSI_FLOOR` so an empty bin stays finite. Rule of thumb: < 0.1 stable, 0.1–0.25 moderate
shift, > 0.25 shifted.

Bins come from what the fit stored, never from the new rows:

* a standardized numeric input: the training quantiles ``q(k/64)`` of the value the model sees
  (imputed, clipped, log1p, standardized). The inner edges ``q(4/64), q(8/64) … q(60/64)``
  (:data:`PSI_BINS` = 16 bins), ties merged, cut the line into bins of training share
  ``(last k with q(k/64) equal to the edge − the same of the previous edge) / 64``:
  exact for a continuous variable; a value tied over several quantiles (a point mass) puts its
  whole run of quantiles in the bin it closes, which is right up to the mass lying below it.
* a quantile-bucketed input: its bucket edges (``quantile_buckets`` − 1 quantiles) with
  ``1 / quantile_buckets`` each. Edges that tied at fit time were merged and their shares are not
  stored: PSI is then not computed (``None``, with the reason).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from recsys_mtl.features.fitted import MISSING, OOV, QUANTILE_STEPS, FittedNumeric
from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.features.sequences import sequence_items
from recsys_mtl.spec.features import CategoricalFeature, NumericFeature, SequenceFeature

#: smallest share a bin counts with (training or new), so an empty bin contributes a finite amount
PSI_FLOOR = 1e-4
#: PSI bins of a standardized input (every 4th of the 64 stored quantiles). Under no drift PSI is
#: about (bins − 1) / rows from sampling alone (a chi-square over rows), so fewer, wider bins keep
#: it well under the 0.1 mark on a few thousand rows; each entry reports that floor as ``psi_noise``
PSI_BINS = 16
#: PSI above which an input is marked shifted / moderately shifted
PSI_SHIFTED, PSI_MODERATE = 0.25, 0.1


def psi(expected: np.ndarray, actual: np.ndarray, floor: float = PSI_FLOOR) -> float:
    """(K,) training shares and (K,) new shares (each summing to 1) → PSI."""
    e = np.maximum(np.asarray(expected, np.float64), floor)
    a = np.maximum(np.asarray(actual, np.float64), floor)
    return float(np.sum((a - e) * np.log(a / e)))


def quantile_bins(quantiles: list[float], bins: int = PSI_BINS) -> tuple[np.ndarray, np.ndarray]:
    """Training quantiles q(k/S), k = 0..S → (inner edges (M,), training share of the M + 1 bins):
    every (S / ``bins``)-th quantile is an edge (``bins`` must divide S), ties merged."""
    q = np.asarray(quantiles, np.float64)
    steps = len(q) - 1
    if steps % bins:
        raise ValueError(f"{bins} bins do not divide {steps} quantile steps")
    edges: list[float] = []
    last: list[int] = []
    for k in range(steps // bins, steps, steps // bins):
        v = float(q[k])
        if not edges or v != edges[-1]:
            edges.append(v)
            last.append(int(np.flatnonzero(q == v).max()))  # a tie: the edge closes its whole run of quantiles
    cdf = np.asarray([0, *last, steps], np.float64) / steps
    return np.asarray(edges), np.diff(cdf)


def shares(values: np.ndarray, edges: np.ndarray, side: str = "left") -> np.ndarray:
    """(N,) values → share of them in each bin ``(-inf, e_0], (e_0, e_1], …, (e_M-1, inf)``
    (``side="right"``: ``[e_i, e_i+1)``, as quantile buckets count them)."""
    counts = np.bincount(np.searchsorted(edges, values, side=side), minlength=len(edges) + 1)
    return counts / max(values.size, 1)


def numeric_drift(f: NumericFeature, fitted: FittedNumeric, col: pl.Series) -> dict[str, Any]:
    """PSI of one numeric input, with its missing share and the new rows' mean on the model's scale."""
    x, missing = fitted.transform(col)
    out: dict[str, Any] = {"kind": "numeric", "rows": int(x.size), "missing_share": float(missing.mean()) if x.size else None}
    if fitted.boundaries is not None:  # bucket indices (FIRST + bin)
        buckets = f.quantile_buckets or 0
        if len(fitted.boundaries) != buckets - 1:
            return {**out, "psi": None, "note": "bucket edges tied at fit time; their training shares are not stored"}
        edges = np.asarray(fitted.boundaries, np.float64)
        expected = np.full(buckets, 1.0 / buckets)
        new = shares(fitted.apply(col)[0], edges, side="right")  # the buckets the model sees
    elif fitted.quantiles is not None and len(fitted.quantiles) == QUANTILE_STEPS + 1:
        edges, expected = quantile_bins(fitted.quantiles)
        new = shares(x, edges)
        out["mean_std_units"] = float(x.mean()) if x.size else None  # 0 on the training rows
    else:
        return {**out, "psi": None, "note": "no training quantiles in this export (an older fit)"}
    return {**out, "psi": psi(expected, new), "bins": len(expected), "psi_noise": (len(expected) - 1) / max(x.size, 1)}


def _oov(idx: np.ndarray, hashed: bool) -> dict[str, Any]:
    present = idx != MISSING
    n = int(present.sum())
    return {"values": int(idx.size), "missing_share": float((~present).mean()) if idx.size else None,
            "oov_share": None if hashed else (float((idx[present] == OOV).sum()) / n if n else None),
            **({"note": "hashed: every value has a bucket"} if hashed else {})}


def drift_report(pre: Preprocessor, df: pl.DataFrame, features: list[str]) -> dict[str, dict[str, Any]]:
    """Per feature named in ``features`` (the export's inputs): its drift against ``pre``'s fit."""
    spec = pre.spec
    by_name = {f.name: f for f in spec.features}
    out: dict[str, dict[str, Any]] = {}
    for name in features:
        f = by_name[name]
        if isinstance(f, CategoricalFeature):
            table = pre.tables[f.table]
            out[name] = {"kind": "categorical", "column": f.source, **_oov(table.lookup(df[f.source]), table.vocab is None)}
        elif isinstance(f, SequenceFeature):
            table = pre.tables[f.table]
            items = df.select(sequence_items(f, df.schema[f.source]).list.head(f.max_len)).to_series()
            flat = items.explode(empty_as_null=False, keep_nulls=False)
            out[name] = {"kind": "sequence", "column": f.source, **_oov(table.lookup(flat), table.vocab is None)}
            out[name]["values"] = int(flat.len())  # items, not rows
        elif isinstance(f, NumericFeature):
            out[name] = {"column": f.source, **numeric_drift(f, pre.numeric[f.name], df[f.source])}
    return out


def drift_flag(entry: dict[str, Any]) -> str:
    """A one-word verdict for the report: shifted / moderate / stable (PSI), or the OOV share as text."""
    if entry.get("psi") is not None:
        v = entry["psi"]
        return "shifted" if v > PSI_SHIFTED else "moderate" if v > PSI_MODERATE else "stable"
    return ""
