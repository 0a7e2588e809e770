"""A pytest plugin for benchmarks/suite_time.py: each test's CPU seconds and wall seconds.

    python -m pytest -p benchmarks.suite_cpu_plugin tests      # with SUITE_CPU_DIR set

CPU = this process's user + system time plus that of the children it waited for (subprocess
fits, servers, DDP launches), over setup + call + teardown, so a test that sleeps or waits on a
server costs little and one that fits costs what it computes: a measure that the load of other
processes on the machine barely changes, unlike wall time. Ray's and Spark's daemons are not
children of the test process: their CPU is not counted. One JSON line per test
(``{"id", "cpu", "wall", "start"}``, start in Unix seconds, to lay the workers' timelines side by side) is appended to ``$SUITE_CPU_DIR/cpu_<xdist worker>.jsonl``.
"""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path
from typing import IO, Iterator

import pytest

ENV = "SUITE_CPU_DIR"


def cpu_seconds() -> float:
    """User + system seconds of this process and of its waited-for children."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class _Recorder:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.out: IO[str] | None = None

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Iterator[None]:
        if self.out is None:  # opened in the worker that runs the test (xdist workers load the plugin too)
            worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
            self.out = open(self.folder / f"cpu_{worker}.jsonl", "a")
        cpu, wall, start = cpu_seconds(), time.perf_counter(), time.time()
        yield
        self.out.write(json.dumps({"id": item.nodeid, "cpu": cpu_seconds() - cpu, "wall": time.perf_counter() - wall,
                                   "start": start}) + "\n")
        self.out.flush()


def pytest_configure(config: pytest.Config) -> None:
    folder = os.environ.get(ENV)
    if folder:
        config.pluginmanager.register(_Recorder(Path(folder)), "suite_cpu_recorder")
