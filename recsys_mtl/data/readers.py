"""Read CSV, Parquet and Arrow IPC files into polars, and write Parquet atomically, with errors that name the file."""

from __future__ import annotations

import os
from contextlib import suppress
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


def write_parquet_atomic(frame: pl.DataFrame, path: Path, what: str) -> None:
    """Write ``frame`` to ``path`` through a per-process temporary file beside it and a rename:
    processes started together (DDP ranks, Ray or Optuna workers) never read a half-written file.
    A failed write removes the temporary file and raises :class:`DataError` naming ``path`` and ``what``."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.write_parquet(tmp)
        os.replace(tmp, path)
    except (OSError, pl.exceptions.PolarsError) as exc:  # polars reports an IO error (disk full) as ComputeError
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot write {what} ({reason})") from None
