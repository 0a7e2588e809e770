"""Build a test artifact (an export, a run folder) once per pytest run, shared by every xdist worker.

A session-scoped fixture is still built once per worker (and once per module that imports it:
pytest keeps one fixture definition per importing module). :func:`built_once` keeps the result
in the run's shared base temp folder and builds it under a file lock, so the other worker (and
every other module) waits for it and then reads the same files.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path
from typing import Callable

import pytest

#: the file written last by a completed build (the folder holds nothing else until it exists)
DONE = ".built"


def run_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The base temp folder of the whole run: under pytest-xdist each worker's base temp
    (``.../popen-gwN``) sits in the folder the controller created for the run."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """``<run root>/<name>``, after ``build(folder)`` filled it exactly once in this run.

    A build that raised leaves no marker: the next caller builds again in a fresh folder (and
    fails the same way, with the same error, rather than reading a half-written artifact).
    """
    root = run_root(tmp_path_factory)
    folder = root / name
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (folder / DONE).is_file():
            if folder.exists():  # a build that raised part-way
                shutil.rmtree(folder)
            folder.mkdir()
            build(folder)
            (folder / DONE).write_text("")
    return folder
