"""The real server against slow, silent, oversized and vanishing clients (raw sockets on loopback):
each is timed out or refused with a JSON answer and ``Connection: close``, the server keeps
serving, and its log holds no ERROR line or traceback."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from tests.support.export import export_dir, good_row  # noqa: F401  (fixture)
from tests.support.serving import start_server

HEADER_TIMEOUT, BODY_TIMEOUT = 1.0, 1.0


@pytest.fixture(scope="module")
def server(export_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:  # noqa: F811
    log_path = tmp_path_factory.mktemp("serve-slow") / "server.log"
    with log_path.open("wb") as log:
        proc, port = start_server(export_dir, log, "--header-timeout", str(HEADER_TIMEOUT), "--body-timeout",
                                  str(BODY_TIMEOUT), "--max-header-kb", "8", "--max-body-mb", "1", "--log-level", "debug")
        yield port, log_path
        proc.terminate()
        proc.wait(timeout=30)


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _split(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def _healthy(port: int) -> None:
    r = httpx.post(f"http://127.0.0.1:{port}/predict", json=good_row(), timeout=10)
    assert r.status_code == 200 and r.json()["rows"] == 1


def test_slow_headers_silence_and_slow_body_get_408_and_close(server: tuple[int, Path]) -> None:
    """Three clients at once, so that the three timeouts run out together: one wait, not three (the
    quick tier's silent and slow-body cases took one each; the slow headers' joins them)."""
    with _connect(server[0]) as slow_headers, _connect(server[0]) as silent, _connect(server[0]) as slow_body:
        started = time.monotonic()
        slow_headers.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
        slow_body.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"num0\"")
        time.sleep(0.3)
        slow_headers.sendall(b"Content-Type: application/json\r\n")  # trickled: the deadline is not reset
        status, headers, body = _split(_read_all(slow_headers))
        assert time.monotonic() - started < HEADER_TIMEOUT + 5
        assert status == 408 and headers["connection"] == "close" and json.loads(body)["code"] == "header_timeout"

        status, headers, _ = _split(_read_all(silent))
        assert status == 408 and headers["connection"] == "close"

        status, headers, body = _split(_read_all(slow_body))
        error = json.loads(body)
        assert status == 408 and headers["connection"] == "close" and error["code"] == "body_timeout" and error["field"] == "body"
    _healthy(server[0])


def test_oversized_headers_get_431(server: tuple[int, Path]) -> None:
    with _connect(server[0]) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
        for _ in range(20):  # 20 KiB of headers against an 8 KiB limit, in separate writes
            s.sendall(b"X-Filler: " + b"a" * 1024 + b"\r\n")
            time.sleep(0.01)
        status, headers, body = _split(_read_all(s))
    assert status == 431 and headers["connection"] == "close" and json.loads(body)["code"] == "headers_too_large"
    _healthy(server[0])


def test_chunked_body_over_the_limit_gets_413_and_close(server: tuple[int, Path]) -> None:
    with _connect(server[0]) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
        try:
            for _ in range(20):  # 1.25 MiB against a 1 MiB limit, length unknown in advance
                s.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before the rest arrived
        status, headers, body = _split(_read_all(s))
    assert status == 413 and headers["connection"] == "close" and json.loads(body)["field"] == "body"
    _healthy(server[0])


def test_client_hanging_up_mid_body_is_not_an_error(server: tuple[int, Path]) -> None:
    for _ in range(3):
        with _connect(server[0]) as s:
            s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n[{")
            time.sleep(0.1)
    _healthy(server[0])
    time.sleep(0.3)
    log = server[1].read_text(errors="replace")
    assert "left before sending its whole request" in log  # logged, at debug level
    assert "Traceback" not in log and "ERROR" not in log, log[-3000:]


def test_metadata_shows_no_absolute_path(server: tuple[int, Path], export_dir: Path) -> None:  # noqa: F811
    text = httpx.get(f"http://127.0.0.1:{server[0]}/metadata", timeout=10).text
    meta = json.loads(text)
    assert meta["tasks"] == ["task0", "task1"] and meta["run_dir"] == "run-mmoe"
    assert str(export_dir.parent) not in text and '"/' not in text
