"""A data path as a study records it: what the files hold, not where they lie.

A study's trials depend on the data, not on the folder a checkout or a machine keeps it in: two
workers of one study on two machines (data under another mount point), or a study resumed from a
moved checkout, read the same files under other absolute paths. So the pipeline identity
(:mod:`recsys_mtl.tune.fingerprint`) keys a data path by :func:`signature`: the files it names (a
file; every file below a folder; a glob's matches), their sizes and a SHA-256 of each file's first
and last MiB. Reading 2 MiB per file keeps resuming a study over large tables instant; a file
rewritten with new rows changes its size or its ends, which is what a refreshed table does. An
edit of the same size in a file's middle alone goes unseen (the documented limit).
"""

from __future__ import annotations

import glob
import hashlib
from pathlib import Path
from typing import Any

#: bytes read from each end of a file
EDGE = 1 << 20


def signature(path: Path) -> dict[str, Any]:
    """``{"files", "bytes", "sha256"}`` of the files at ``path``, with ``"name"`` for one file
    (``{"name", "missing": True}`` where ``path`` names no file).

    Files are named relative to the folder (or a glob's fixed prefix) they were found under, so
    the signature does not depend on where that folder lies.
    """
    root, files = _files(path)
    if not files:
        return {"name": path.name, "missing": True}
    digest = hashlib.sha256()
    total = 0
    for f in files:
        size = f.stat().st_size
        total += size
        digest.update(f"{f.relative_to(root).as_posix()}\0{size}\0{_edges(f, size)}\n".encode())
    named = {"name": path.name} if path.is_file() else {}  # a folder's or glob's own name is where, not what
    return {**named, "files": len(files), "bytes": total, "sha256": digest.hexdigest()}


def _files(path: Path) -> tuple[Path, list[Path]]:
    """The folder names are taken relative to, and the sorted files ``path`` names."""
    if path.is_file():
        return path.parent, [path]
    if path.is_dir():
        return path, sorted(p for p in path.rglob("*") if p.is_file())
    # a glob: relative to its last folder without a wildcard
    root = Path(*_fixed_prefix(path.parts))
    return root, sorted(p for p in (Path(m) for m in glob.glob(str(path), recursive=True)) if p.is_file())


def _fixed_prefix(parts: tuple[str, ...]) -> list[str]:
    prefix: list[str] = []
    for part in parts:
        if glob.has_magic(part):
            break
        prefix.append(part)
    return prefix or ["."]


def _edges(path: Path, size: int) -> str:
    """SHA-256 of the file's first and last :data:`EDGE` bytes (the whole file when it is small)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(EDGE))
        if size > 2 * EDGE:
            f.seek(size - EDGE)
            h.update(f.read(EDGE))
        elif size > EDGE:
            h.update(f.read())
    return h.hexdigest()
