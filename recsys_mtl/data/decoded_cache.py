"""Parquet copies of decoded source files, so that a slow parse is paid once, not by every process.

Decompressing and parsing a text file (census-income's 100 MB ``.bz2``: ~5 CPU s) is paid again by
every process that reads it: each ``fit``, each Optuna worker, each ``baseline`` run. A Parquet copy
of the decoded frame reads in a fraction of that. The copy is named from the source file's name,
size and modification time (ns) and the decoder's ``tag`` (which carries its format version), so a
replaced or edited source file is decoded again and a changed decoder never reads an old copy.
Copies are written to a per-process temporary file and renamed, so processes started together never
read a half-written copy.

The cache never changes what a read returns or which error it raises: errors come from the decoder
on the source file; a copy that cannot be read (truncated, corrupt) is decoded again and rewritten;
a folder that cannot be written gives a warning naming the copy and the decoded frame.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import polars as pl

from recsys_mtl.data.readers import write_parquet_atomic
from recsys_mtl.errors import DataError

#: what reading a damaged Parquet file raises (a panic of polars' reader is not an ``Exception``)
_UNREADABLE = (OSError, pl.exceptions.PolarsError, pl.exceptions.PanicException)


def read_decoded(source: Path, cache_dir: Path | None, decode: Callable[[Path], pl.DataFrame], tag: str) -> pl.DataFrame:
    """``decode(source)``, through a Parquet copy under ``cache_dir`` (none: decode every time).

    ``tag`` names the decoder and its format version (``census-v1``): bump it whenever ``decode``
    would return another frame for the same file.
    """
    if cache_dir is None or (key := _key(source)) is None:
        return decode(source)  # a missing source is the decoder's error, never the cache's
    copy = cache_dir / f"{tag}_{source.name}_{key}.parquet"
    if copy.is_file():
        try:
            return pl.read_parquet(copy)
        except _UNREADABLE:
            pass  # truncated or corrupt: decoded again and rewritten below
    frame = decode(source)
    if _key(source) == key:  # a file replaced while it was decoded is not kept under the old file's name
        _write(frame, copy)
    return frame


def _key(source: Path) -> str | None:
    """``<size>_<mtime in ns>`` of the file; None where it cannot be read (missing)."""
    try:
        st = source.stat()
    except OSError:
        return None
    return f"{st.st_size}_{st.st_mtime_ns}"


def _write(frame: pl.DataFrame, copy: Path) -> None:
    try:
        write_parquet_atomic(frame, copy, "the decoded cache")
    except DataError as exc:  # a cache that cannot be written slows reads down, it never fails them
        warnings.warn(f"{exc}; the file is decoded on every read", stacklevel=3)
