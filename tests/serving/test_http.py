"""The real server: ``python -m serving`` (torch blocked) on a free loopback port, a real client,
and a graceful shutdown that finishes in-flight requests."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from tests.support.export import export_dir, good_row  # noqa: F401  (fixture)
from tests.support.serving import BLOCKER


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(export: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, str(BLOCKER), "-m", "serving", str(export), "--port", str(port), "--threads", "1", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stdout.read() if proc.stdout else ''}")
        try:
            if httpx.get(url + "/ready", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("server not ready in 60 s")


@pytest.fixture
def server(export_dir: Path) -> Iterator[str]:  # noqa: F811
    proc, url = _start(export_dir)
    yield url
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


@pytest.mark.slow
def test_real_client_scores_over_loopback(server: str) -> None:
    with httpx.Client(base_url=server) as c:
        r = c.post("/predict", json=[good_row(i) for i in range(3)])
        assert r.status_code == 200 and r.json()["rows"] == 3
        bad = c.post("/predict", json={"num0": 1})
        assert bad.status_code == 422 and "missing field" in bad.json()["error"]
        assert c.get("/metadata").json()["serving"]["variant"] == "fp32"
        assert c.post("/predict", json=good_row()).status_code == 200  # still serving after a bad request


@pytest.mark.slow
def test_graceful_shutdown_finishes_in_flight_requests(export_dir: Path) -> None:  # noqa: F811
    # a long batching wait keeps requests in flight when SIGTERM arrives; the signal waits long
    # enough for the requests to be accepted even on a loaded machine (1 s; the batch runs 3 s
    # after the first one arrived)
    proc, url = _start(export_dir, "--max-wait-ms", "3000")

    def send(i: int) -> tuple[int, float]:
        status = httpx.post(url + "/predict", json=good_row(i), timeout=30).status_code
        return status, time.monotonic()

    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(send, i) for i in range(3)]
        time.sleep(1.0)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        answers = [f.result() for f in futures]
    assert [status for status, _ in answers] == [200, 200, 200]
    assert all(done > signalled for _, done in answers)  # every answer came after the signal: they were in flight
    # uvicorn re-raises the signal once shut down, so the exit status is SIGTERM's
    assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    output = proc.stdout.read() if proc.stdout else ""
    assert "Finished server process" in output and "Traceback" not in output
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "/health", timeout=2)


@pytest.mark.slow
def test_workers_share_the_port_and_shut_down_together(export_dir: Path) -> None:  # noqa: F811
    proc, url = _start(export_dir, "--workers", "2")
    with httpx.Client(base_url=url) as c:
        assert all(c.post("/predict", json=good_row(i)).status_code == 200 for i in range(4))
        assert c.post("/predict", json={"num0": 1}).status_code == 422
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
    output = proc.stdout.read() if proc.stdout else ""
    assert output.count("Started server process") == 2, output  # one per worker
    assert output.count("Finished server process") == 2 and "Traceback" not in output, output
