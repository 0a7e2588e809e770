"""Raw polars rows → the ONNX feed, built by the server's own input path.

The rows go to :meth:`serving.schema.Schema.from_arrow` as an Arrow table, exactly as a client's
Arrow request would: parity and test metrics computed on this feed are those of the served model,
and a column the server would refuse or convert otherwise than training fails the export.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from recsys_mtl.export.preprocess_graph import ExportError
from serving.contract import InputSpec
from serving.schema import RequestError, Schema


def raw_feed(inputs: list[InputSpec], df: pl.DataFrame, where: str = "rows") -> dict[str, np.ndarray]:
    """ONNX Runtime feed for ``df`` (which must hold every input column; others are ignored)."""
    schema = Schema.for_inputs(inputs)
    missing = [i.name for i in inputs if i.name not in df.columns]
    if missing:
        raise ExportError(f"{where}: input column {missing[0]!r} is missing")
    try:
        feed, _ = schema.from_arrow(df.select([i.name for i in inputs]).to_arrow(), max_rows=max(df.height, 1))
    except RequestError as exc:
        raise ExportError(f"{where}: the server refuses these rows (column {exc.field!r}): {exc.message}") from None
    return feed
