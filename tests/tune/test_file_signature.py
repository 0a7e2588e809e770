"""A data path's signature: the files it names, by content and relative name, not by location."""

from __future__ import annotations

import shutil
from pathlib import Path

from recsys_mtl.tune.file_signature import EDGE, signature


def _tree(root: Path) -> Path:
    (root / "part").mkdir(parents=True)
    (root / "a.parquet").write_bytes(b"a" * 10)
    (root / "part" / "b.parquet").write_bytes(bytes(range(256)) * (3 * EDGE // 256))  # 3 MiB: ends hashed, not all
    return root


def test_a_moved_file_folder_or_glob_keeps_its_signature(tmp_path: Path) -> None:
    here = _tree(tmp_path / "here")
    there = tmp_path / "mnt" / "elsewhere"
    shutil.copytree(here, there)
    for rel in ("a.parquet", ".", "**/*.parquet"):
        assert signature(here / rel) == signature(there / rel), rel
    whole = signature(here)
    assert whole["files"] == 2 and whole["bytes"] == 10 + 3 * EDGE and "name" not in whole  # a folder renamed is the same data
    assert signature(here / "a.parquet")["name"] == "a.parquet"
    assert signature(here / "**/*.parquet")["sha256"] == whole["sha256"]  # the same files, named alike


def test_new_rows_a_renamed_file_or_missing_data_change_it(tmp_path: Path) -> None:
    root = _tree(tmp_path / "d")
    before = signature(root)
    big = root / "part" / "b.parquet"
    with open(big, "r+b") as f:  # same size, last byte changed: a rewritten tail
        f.seek(-1, 2)
        f.write(b"\x00")
    assert signature(root)["sha256"] != before["sha256"] and signature(root)["bytes"] == before["bytes"]
    (root / "a.parquet").write_bytes(b"a" * 11)  # a row appended
    assert signature(root / "a.parquet")["bytes"] == 11
    renamed = signature(root)
    big.rename(root / "part" / "c.parquet")
    assert signature(root)["sha256"] != renamed["sha256"]
    assert signature(tmp_path / "nowhere.csv") == {"name": "nowhere.csv", "missing": True}
    assert signature(tmp_path / "none-*.csv") == {"name": "none-*.csv", "missing": True}
