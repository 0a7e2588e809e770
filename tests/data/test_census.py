"""The census-income reader and its standard split (needs ../shared/data)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Iterator

import pytest

from recsys_mtl.data import census
from recsys_mtl.data.census import CENSUS_COLUMNS, read_census, read_census_file
from recsys_mtl.errors import DataError


@pytest.fixture(scope="module", autouse=True)
def read_each_file_once() -> Iterator[None]:
    """read_census reads (and decompresses) both files on every call; the split tests call it four
    times on the same files, so the module reads each file once and splits it each time."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(census, "read_census_file", lru_cache(maxsize=None)(read_census_file))
        yield


@pytest.mark.slow
def test_census_split_sizes_and_labels(census_dir: Path) -> None:
    train, valid, test = read_census(census_dir, split_seed=2018)
    assert (train.height, valid.height, test.height) == (199_523, 49_881, 49_881)
    assert train.columns == CENSUS_COLUMNS
    assert (train["income_50k"] == "50000+.").sum() == 12_382
    assert (train["marital_stat"] == "Never married").sum() == 86_485
    # fields are stripped of the ', ' separator's space
    assert train["class_worker"][0] == train["class_worker"][0].strip()


@pytest.mark.slow
def test_census_split_is_seeded(census_dir: Path) -> None:
    _, v1, _ = read_census(census_dir, split_seed=1)
    _, v2, _ = read_census(census_dir, split_seed=1)
    _, v3, _ = read_census(census_dir, split_seed=2)
    assert v1.equals(v2) and not v1.equals(v3)


def test_missing_and_empty_census_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="census file not found"):
        read_census_file(tmp_path / "census-income.data.bz2")
    (tmp_path / "empty.data").write_text("")
    with pytest.raises(DataError, match="empty.data: file is empty"):
        read_census_file(tmp_path / "empty.data")
