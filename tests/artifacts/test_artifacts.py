"""recsys_mtl/artifacts.py: output folders are checked before the work that fills them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from recsys_mtl.artifacts import check_new_folder
from recsys_mtl.errors import DataError, SpecError


def test_new_or_empty_folders_pass(tmp_path: Path) -> None:
    check_new_folder(tmp_path / "a" / "b" / "c")  # nothing of it exists yet
    (tmp_path / "empty").mkdir()
    check_new_folder(tmp_path / "empty")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # the check creates nothing


@pytest.mark.parametrize(("make", "target", "says"), [
    (lambda t: (t / "f").write_text("x"), "f", r"f: is a file; the output is a new folder, choose another --out"),
    (lambda t: (t / "full").mkdir() or (t / "full" / "x").write_text("keep"), "full", r"full: already exists and is not empty"),
    (lambda t: (t / "f").write_text("x"), "f/e/g", r"f/e/g: cannot be created: .*/f is a file, not a folder"),
])
def test_unwritable_destinations_are_named(tmp_path: Path, make, target: str, says: str) -> None:  # type: ignore[no-untyped-def]
    make(tmp_path)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    with pytest.raises(DataError, match=says):
        check_new_folder(tmp_path / target)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before  # nothing touched


def test_a_read_only_parent_is_named_and_the_error_class_and_flag_are_the_callers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # root may write anywhere, so the permission bit alone cannot show it here: access() answers as for a user
    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p) != locked and real(p, mode, **kw))
    with pytest.raises(SpecError, match=r"locked/new: cannot be created: .*locked is not writable; choose another --dest"):
        check_new_folder(locked / "new", option="--dest", error=SpecError)
    check_new_folder(tmp_path / "elsewhere")
