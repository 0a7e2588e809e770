"""Helpers for tests that run the real server: start ``python -m serving`` (torch blocked) on a free
loopback port, request bodies (JSON and Arrow IPC) built from the synthetic export's inputs."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import pyarrow as pa

from tests.support.export import good_row

BLOCKER = Path(__file__).with_name("serving_blocker.py")
NUMERIC = ("num0", "num1", "num2", "num3", "num4", "num5")
CATEGORICAL = ("cat0", "cat1", "cat2", "cat3", "cat4", "cat5")
ARROW_SCHEMA = pa.schema([*[(k, pa.float64()) for k in NUMERIC], *[(k, pa.string()) for k in CATEGORICAL],
                          ("tags", pa.list_(pa.string()))])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(export: Path, log: BinaryIO, *extra: str) -> tuple[subprocess.Popen[bytes], int]:
    """``python -m serving export`` writing its output to ``log``; returns once /ready answers 200."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(BLOCKER), "-m", "serving", str(export), "--port", str(port), "--threads", "1", *extra],
        stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return proc, port
        except httpx.TransportError:
            pass
        time.sleep(0.05)  # not listening yet, or not ready (503): ask again soon, without spinning
    proc.kill()
    raise AssertionError("server not ready in 60 s")


def arrow_bytes(table: pa.Table, compression: str | None = None) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression=compression)) as w:
        w.write_table(table)
    return sink.getvalue()


def good_table(rows: int = 3) -> pa.Table:
    return pa.Table.from_pylist([good_row(i) for i in range(rows)], schema=ARROW_SCHEMA)


def with_column(table: pa.Table, name: str, array: Any, new_name: str | None = None) -> pa.Table:
    """``table`` with column ``name`` replaced by ``array`` (renamed to ``new_name``)."""
    i = table.column_names.index(name)
    return table.set_column(i, new_name or name, array)
