"""Readers: CSV / Parquet / IPC in; missing, empty and unknown files give errors naming the file."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from recsys_mtl.data.readers import read_table
from recsys_mtl.errors import DataError


@pytest.mark.parametrize("suffix, write", [(".csv", "write_csv"), (".parquet", "write_parquet"), (".arrow", "write_ipc")])
def test_formats_round_trip(tmp_path: Path, suffix: str, write: str) -> None:
    df = pl.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    path = tmp_path / f"t{suffix}"
    getattr(df, write)(path)
    assert read_table(path).equals(df)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope.csv: file not found"):
        read_table(tmp_path / "nope.csv")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(DataError, match="e.csv: file is empty"):
        read_table(tmp_path / "e.csv")


def test_header_only_file(tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_text("a,b\n")
    with pytest.raises(DataError, match="h.csv: file has no rows"):
        read_table(tmp_path / "h.csv")


def test_unknown_extension(tmp_path: Path) -> None:
    (tmp_path / "t.xlsx").write_text("x")
    with pytest.raises(DataError, match="unknown format '.xlsx'"):
        read_table(tmp_path / "t.xlsx")


def test_corrupt_parquet(tmp_path: Path) -> None:
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="bad.parquet: cannot read as parquet"):
        read_table(tmp_path / "bad.parquet")
