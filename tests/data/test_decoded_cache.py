"""recsys_mtl/data/decoded_cache.py through its user, the census reader, on made-up census files."""

from __future__ import annotations

import bz2
import gzip
import os
import re
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from recsys_mtl.data import census
from recsys_mtl.data.census import CENSUS_COLUMNS, TEST_FILE, TRAIN_FILE, read_census, read_census_file
from recsys_mtl.errors import DataError
from tests.support.census import census_lines, tiny_census


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files the census reader decoded (decompressed and parsed), in order."""
    seen: list[Path] = []
    decode = census._decode

    def counted(path: Path) -> pl.DataFrame:
        seen.append(path)
        return decode(path)

    monkeypatch.setattr(census, "_decode", counted)
    return seen


def test_the_cached_read_is_the_direct_read(tmp_path: Path, decodes: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    folder, cache = tiny_census(tmp_path / "census"), tmp_path / "cache"
    direct = read_census(folder, split_seed=7)
    write_parquet, during_writes = pl.DataFrame.write_parquet, []

    def watched(self: pl.DataFrame, file: Path, **kwargs: object) -> None:
        during_writes.append(sorted(p.name for p in cache.glob("*.parquet")))  # what a reader could open
        write_parquet(self, file, **kwargs)

    monkeypatch.setattr(pl.DataFrame, "write_parquet", watched)
    first = read_census(folder, split_seed=7, cache_dir=cache)
    # each copy is written under another name and appears complete: never seen half-written
    assert len(during_writes) == 2 and during_writes[0] == [] and len(during_writes[1]) == 1
    assert decodes == [folder / TRAIN_FILE, folder / TEST_FILE] * 2
    assert sorted(p.name.split("_")[1] for p in cache.iterdir()) == [TRAIN_FILE, TEST_FILE]  # one copy per file, no .tmp left

    def no_decompression(*args: object, **kwargs: object) -> None:
        raise AssertionError("decompressed a file that has a cached copy")

    monkeypatch.setattr(bz2, "open", no_decompression)
    monkeypatch.setattr(gzip, "open", no_decompression)
    second = read_census(folder, split_seed=7, cache_dir=cache)
    assert len(decodes) == 4  # read from the copies
    for a, b, c in zip(direct, first, second):
        assert a.columns == CENSUS_COLUMNS and a.height > 0
        assert_frame_equal(a, b)  # values, column order and dtypes
        assert_frame_equal(a, c)
    assert direct[0]["marital_stat"].str.starts_with(" ").sum() == 0  # stripped, as the direct read


def test_a_replaced_or_edited_source_is_decoded_again(tmp_path: Path, decodes: list[Path]) -> None:
    cache = tmp_path / "cache"
    train = tiny_census(tmp_path / "census", train_rows=30) / TRAIN_FILE
    assert read_census_file(train, cache).height == 30
    # a refreshed file put in place: another size, the same modification time (only the size tells)
    mtime = train.stat().st_mtime_ns
    tiny_census(tmp_path / "refresh", train_rows=50)
    (tmp_path / "refresh" / TRAIN_FILE).replace(train)
    os.utime(train, ns=(mtime, mtime))
    assert read_census_file(train, cache).height == 50
    # edited in place to the same size: only the modification time tells
    plain = tmp_path / "census.data"
    plain.write_bytes(census_lines(5, seed=0))
    before = read_census_file(plain, cache)
    text = plain.read_bytes()
    edited = text.replace(b"Private", b"Privat_", 1)
    assert edited != text and len(edited) == len(text)
    mtime = plain.stat().st_mtime_ns
    plain.write_bytes(edited)
    os.utime(plain, ns=(mtime + 1_000_000, mtime + 1_000_000))  # a coarse file system may keep the old time
    after = read_census_file(plain, cache)
    assert not after.equals(before) and after.equals(census._decode(plain))
    assert decodes.count(train) == 2 and decodes.count(plain) == 3  # 3: the direct decode just above
    assert read_census_file(plain, cache).equals(after) and decodes.count(plain) == 3


def test_a_file_replaced_while_it_is_decoded_is_not_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache, plain = tmp_path / "cache", tmp_path / "census.data"
    plain.write_bytes(census_lines(5, seed=0))
    decode = census._decode

    def refreshed_meanwhile(path: Path) -> pl.DataFrame:
        frame = decode(path)
        path.write_bytes(census_lines(8, seed=1))
        return frame

    monkeypatch.setattr(census, "_decode", refreshed_meanwhile)
    assert read_census_file(plain, cache).height == 5
    assert not cache.exists()  # the 5 rows are not kept under the 8-row file's name, nor the old one's
    monkeypatch.setattr(census, "_decode", decode)
    assert read_census_file(plain, cache).height == 8


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_copy_is_decoded_again_and_rewritten(tmp_path: Path, decodes: list[Path], damage: str) -> None:
    cache = tmp_path / "cache"
    train = tiny_census(tmp_path / "census") / TRAIN_FILE
    good = read_census_file(train, cache)
    [copy] = cache.iterdir()
    data = copy.read_bytes()
    copy.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"not parquet" * 20, "empty": b""}[damage])
    assert_frame_equal(read_census_file(train, cache), good)
    assert len(decodes) == 2
    assert_frame_equal(pl.read_parquet(copy), good)  # rewritten whole
    assert [p.name for p in cache.iterdir()] == [copy.name]


def test_a_cache_that_cannot_be_written_still_returns_the_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train = tiny_census(tmp_path / "census") / TRAIN_FILE
    direct = read_census_file(train)
    # a cache folder that cannot be created (a file is in its path)
    (tmp_path / "a_file").write_text("")
    blocked = tmp_path / "a_file" / "cache"
    with pytest.warns(UserWarning, match=rf"{re.escape(str(blocked))}/census-v1_[^/]*\.parquet: cannot write the decoded cache"):
        assert_frame_equal(read_census_file(train, blocked), direct)
    # a read-only folder (simulated: these tests may run as root, whom a chmod does not stop):
    # the write fails after creating its temporary file, which is removed
    ro = tmp_path / "ro"
    ro.mkdir()

    def refused(self: pl.DataFrame, file: Path, **kwargs: object) -> None:
        Path(file).write_bytes(b"PAR1")
        raise PermissionError(13, "Permission denied", str(file))

    monkeypatch.setattr(pl.DataFrame, "write_parquet", refused)
    with pytest.warns(UserWarning, match=rf"{re.escape(str(ro))}/census-v1_[^/]*\.parquet: cannot write the decoded cache \(\[Errno 13\] Permission denied"):
        assert_frame_equal(read_census_file(train, ro), direct)
    assert list(ro.iterdir()) == []


def test_errors_name_the_source_file_never_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="census-income.data.bz2: census file not found"):
        read_census_file(tmp_path / TRAIN_FILE, cache)
    (tmp_path / "empty.data").write_text("")
    with pytest.raises(DataError, match="empty.data: file is empty"):
        read_census_file(tmp_path / "empty.data", cache)
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="other.csv: not in census format"):
        read_census_file(tmp_path / "other.csv", cache)
    assert not cache.exists()  # nothing was cached for a failed read
    # a file removed after it was cached is missing, not served from its copy
    train = tiny_census(tmp_path / "census") / TRAIN_FILE
    read_census_file(train, cache)
    train.unlink()
    with pytest.raises(DataError, match="census file not found"):
        read_census_file(train, cache)
