"""Read CSV, Parquet and Arrow IPC files into polars, with errors that name the file."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import polars as pl

from recsys_mtl.errors import DataError

_READERS: dict[str, Callable[[Path], pl.DataFrame]] = {
    ".csv": lambda p: pl.read_csv(p, infer_schema_length=10_000),
    ".parquet": pl.read_parquet,
    ".pq": pl.read_parquet,
    ".arrow": pl.read_ipc,
    ".ipc": pl.read_ipc,
    ".feather": pl.read_ipc,
}


def read_table(path: str | Path) -> pl.DataFrame:
    """Read one table; the format follows the file extension."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: unknown format {path.suffix!r} (use one of {sorted(_READERS)})")
    try:
        df = reader(path)
    except pl.exceptions.NoDataError:
        raise DataError(f"{path}: file is empty") from None
    except Exception as exc:  # parse errors come in many types; keep the file in the message
        raise DataError(f"{path}: cannot read as {path.suffix[1:]}: {str(exc).splitlines()[0]}") from None
    if df.height == 0:
        raise DataError(f"{path}: file has no rows")
    return df
