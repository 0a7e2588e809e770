"""Raw polars rows → the ONNX feed, built by the server's own input path.

The rows go to :meth:`serving.schema.Schema.from_arrow` as an Arrow table, as a client's Arrow
request would carry them: parity and test metrics computed on this feed are those of the served
model, and a server conversion that departs from training's fails the export.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from recsys_mtl.export.preprocess_graph import ExportError
from serving.contract import InputSpec
from serving.schema import RequestError, Schema


def _is_text_or_code(dtype: pl.DataType) -> bool:
    """A category type the server takes as it is (strings, integer codes, dictionary-encoded, nulls)."""
    return dtype == pl.String or dtype.is_integer() or isinstance(dtype, (pl.Categorical, pl.Enum)) or dtype == pl.Null


def client_column(spec: InputSpec, col: pl.Series) -> pl.Series:
    """``col`` as a client writes it under the contract, changed only where the data's type is not one
    the contract names: numbers stored as text (CSV read as strings, which training parses) become
    float64; categories of another type (float, bool, date) become text, as training reads them.
    Strings, integers and lists go unchanged (a sequence's delimited strings too, split by the
    server), so parity measures the server's own conversion of them."""
    if spec.kind == "numeric":
        return col.cast(pl.Float64) if col.dtype == pl.String else col
    if spec.kind == "categorical":
        return col if _is_text_or_code(col.dtype) else col.cast(pl.String)
    if spec.kind in ("timestamp", "vector"):  # datetimes, epoch numbers, number lists: the server converts them
        return col
    inner = col.dtype.inner if isinstance(col.dtype, pl.List) else None
    return col if inner is None or _is_text_or_code(inner) else col.cast(pl.List(pl.String))


def raw_feed(inputs: list[InputSpec], df: pl.DataFrame, where: str = "rows") -> dict[str, np.ndarray]:
    """ONNX Runtime feed for ``df`` (which must hold every input column; others are ignored), as the
    server builds it from the same rows sent as Arrow."""
    missing = [i.name for i in inputs if i.name not in df.columns]
    if missing:
        raise ExportError(f"{where}: input column {missing[0]!r} is missing")
    table = pl.DataFrame([client_column(i, df[i.name]) for i in inputs]).to_arrow()
    try:
        feed, _ = Schema.for_inputs(inputs).from_arrow(table, max_rows=max(df.height, 1))
    except RequestError as exc:
        raise ExportError(f"{where}: the server refuses these rows (column {exc.field!r}): {exc.message}") from None
    return feed
