"""Raw polars columns → the numpy feed of the exported graph (see :mod:`.preprocess_graph`)."""

from __future__ import annotations

import numpy as np
import polars as pl

from recsys_mtl.export.preprocess_graph import NULL_TOKEN, RawInput


def _categorical(col: pl.Series) -> np.ndarray:
    """(B,) object array of str; null → :data:`NULL_TOKEN` (ints are written as the data writes them)."""
    return col.cast(pl.String).fill_null(NULL_TOKEN).to_numpy().astype(object)


def _numeric(col: pl.Series) -> np.ndarray:
    """(B,) float64; null → NaN (strings are parsed, as the Python pipeline does)."""
    return col.cast(pl.Float64).fill_null(float("nan")).to_numpy().astype(np.float64)


def _sequence(col: pl.Series) -> np.ndarray:
    """(B, L) object array, L = the longest list (at least 1), padded with :data:`NULL_TOKEN`."""
    lists = col.cast(pl.List(pl.String)).to_list()
    width = max([1, *(len(x) for x in lists if x is not None)])
    out = np.full((len(lists), width), NULL_TOKEN, dtype=object)
    for i, values in enumerate(lists):
        if values:
            out[i, : len(values)] = [NULL_TOKEN if v is None else v for v in values]
    return out


_CONVERT = {"categorical": _categorical, "numeric": _numeric, "sequence": _sequence}


def raw_feed(inputs: list[RawInput], df: pl.DataFrame) -> dict[str, np.ndarray]:
    """ONNX Runtime feed for ``df`` (which must hold every input column)."""
    return {r.name: _CONVERT[r.kind](df[r.name]) for r in inputs}
