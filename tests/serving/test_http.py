"""The real server with ``--workers 2``: ``python -m serving`` (torch blocked) on a free loopback port,
a real client, and both workers' shutdown. The graceful shutdown with requests in flight is
tests/cli/test_faults.py's (one server, one batching wait: not twice)."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from tests.support.export import export_dir, good_row  # noqa: F401  (fixture)
from tests.support.serving import start_server


@pytest.mark.slow
def test_workers_share_the_port_serve_a_real_client_and_shut_down_together(export_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    with (tmp_path / "server.log").open("wb") as log:
        proc, port = start_server(export_dir, log, "--workers", "2")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
            r = c.post("/predict", json=[good_row(i) for i in range(3)])
            assert r.status_code == 200 and r.json()["rows"] == 3
            bad = c.post("/predict", json={"num0": 1})
            assert bad.status_code == 422 and "missing field" in bad.json()["error"]
            assert c.get("/metadata").json()["serving"]["variant"] == "fp32"
            # still serving after a bad request, whichever worker takes each of these
            assert all(c.post("/predict", json=good_row(i)).status_code == 200 for i in range(4))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
    output = (tmp_path / "server.log").read_text()
    assert output.count("Started server process") == 2, output  # one per worker
    assert output.count("Finished server process") == 2 and "Traceback" not in output, output
