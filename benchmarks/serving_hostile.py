"""Hostile load on the HTTP server: keep-alive clients mixing good requests with malformed ones.

Run (any export folder; the figures in docs/benchmarks.md name theirs)::

    python benchmarks/serving_hostile.py --export-dir exports/<x> [--seconds 20] [--clients 64] [--bad-share 0.1]
                                         [--slowloris 8] [--server-workers 1]

``python -m serving`` runs on a loopback port with small limits (1 MiB bodies, 256 rows, 2 s for
headers). ``--clients`` asyncio clients, each on one keep-alive connection (reopened only when the
server says ``Connection: close``), send for ``--seconds``: good requests (JSON of 1 or 8 rows,
Arrow IPC of 8 rows) and, with probability ``--bad-share``, a malformed one of the next kind in
turn (every kind of :func:`bad_requests`, plus a client hanging up mid-body and a request that
is not HTTP, both on a throwaway connection). Meanwhile ``--slowloris`` connections trickle
request headers one byte at a time.

Reported: good requests lost (no 200), wrong answers (outputs against in-process onnxruntime on
the same rows, |diff| > 1e-5), 5xx answers, the statuses per malformed kind, connections reopened,
latency of good requests, whether the server answers ``/ready`` and a correct prediction
afterwards, and ERROR lines / tracebacks in its log. Exit status 1 when any of them is not clean.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.serving_load import free_port, process_tree_cpu  # noqa: E402
from serving.predictor import Predictor  # noqa: E402

JSON, ARROW = "application/json", "application/vnd.apache.arrow.stream"
MAX_BODY, MAX_ROWS = 2**20, 256
Request = tuple[str, bytes]  # (content type, body)


# ---------------------------------------------------------------------- request bodies
def make_rows(inputs: list[dict[str, Any]], n: int, rng: random.Random) -> list[dict[str, Any]]:
    """``n`` valid rows for the export's inputs: numbers, strings seen and unseen, nulls, lists."""
    def value(i: dict[str, Any]) -> Any:
        if rng.random() < 0.1:
            return None
        if i["kind"] == "numeric":
            return round(rng.gauss(0, 10), 3)
        if i["kind"] == "sequence":
            return [f"t{rng.randrange(12)}" for _ in range(rng.randrange(6))]
        return rng.choice([f"c{k}" for k in range(5)] + [f"{i['name']}_{rng.randrange(8)}", "unseen"])
    return [{i["name"]: value(i) for i in inputs} for _ in range(n)]


def arrow_table(inputs: list[dict[str, Any]], rows: list[dict[str, Any]]) -> pa.Table:
    types = {"numeric": pa.float64(), "categorical": pa.string(), "sequence": pa.list_(pa.string())}
    return pa.Table.from_pylist(rows, schema=pa.schema([(i["name"], types[i["kind"]]) for i in inputs]))


def ipc(table: pa.Table, compression: str | None = None) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression=compression)) as w:
        w.write_table(table)
    return sink.getvalue()


def bad_requests(inputs: list[dict[str, Any]], rng: random.Random) -> dict[str, Request]:
    """One malformed request per kind, built for the export's inputs."""
    row = make_rows(inputs, 1, rng)[0]
    by_kind = {k: next((i["name"] for i in inputs if i["kind"] == k), None) for k in ("numeric", "categorical", "sequence")}
    num, cat, seq = by_kind["numeric"], by_kind["categorical"], by_kind["sequence"]

    def with_raw(name: str | None, raw: str) -> bytes:
        parts = [f"{json.dumps(k)}: {raw if k == name else json.dumps(v)}" for k, v in row.items()]
        return ("{" + ", ".join(parts) + "}").encode()

    table = arrow_table(inputs, make_rows(inputs, 8, rng))
    first = inputs[0]["name"]
    out: dict[str, Request] = {
        "missing_field": (JSON, json.dumps({k: v for k, v in row.items() if k != first}).encode()),
        "unknown_field": (JSON, json.dumps({**row, "no_such_field": 1}).encode()),
        "unknown_field_1MiB_name": (JSON, json.dumps({**row, "x" * 1_000_000: 1}).encode()),
        "malformed_json": (JSON, json.dumps(row).encode()[:-7]),
        "not_utf8": (JSON, b'{"a": "\xff\xfe"}'),
        "empty_body": (JSON, b""),
        "empty_array": (JSON, b"[]"),
        "not_an_object": (JSON, b"[1, 2, 3]"),
        "nested_100k_deep": (JSON, b"[" * 100_000 + b"]" * 100_000),
        "too_many_rows": (JSON, json.dumps(make_rows(inputs, MAX_ROWS + 1, rng)).encode()),
        "body_over_limit": (JSON, json.dumps(row).encode() + b" " * MAX_BODY),
        "content_type_csv": ("text/csv", b"a,b\n1,2\n"),
        "arrow_garbage": (ARROW, b"\xff\xff\xff\xff garbage"),
        "arrow_truncated": (ARROW, ipc(table)[:200]),
        "arrow_duplicate_column": (ARROW, ipc(table.append_column(first, table.column(first)))),
        "arrow_missing_column": (ARROW, ipc(table.drop_columns([first]))),
        "arrow_no_rows": (ARROW, ipc(table.slice(0, 0))),
        "arrow_zstd_bomb": (ARROW, ipc(pa.table({"a": pa.array(["z" * 1_000_000] * 4)}), "zstd")),
    }
    if num:
        out |= {
            "numeric_as_string": (JSON, with_raw(num, '"12"')),
            "numeric_NaN": (JSON, with_raw(num, "NaN")),
            "numeric_Infinity": (JSON, with_raw(num, "-Infinity")),
            "numeric_1e999": (JSON, with_raw(num, "1e999")),
            "int_5000_digits": (JSON, with_raw(num, "9" * 5000)),
            "arrow_infinite": (ARROW, ipc(table.set_column(table.column_names.index(num), num,
                                                           pa.array([float("inf")] * table.num_rows)))),
            "arrow_numeric_as_string": (ARROW, ipc(table.set_column(table.column_names.index(num), num,
                                                                    pa.array(["1"] * table.num_rows)))),
        }
    if cat:
        out |= {
            "categorical_as_float": (JSON, with_raw(cat, "1.5")),
            "categorical_lone_surrogate": (JSON, with_raw(cat, '"\\ud800"')),
            "arrow_invalid_utf8": (ARROW, ipc(table.set_column(table.column_names.index(cat), cat, _bad_utf8(table.num_rows)))),
        }
    if seq:
        out |= {
            "sequence_as_string": (JSON, with_raw(seq, '"t1"')),
            "sequence_nested_deep": (JSON, with_raw(seq, "[" * 50_000 + "]" * 50_000)),
        }
    return out


def _bad_utf8(n: int) -> pa.Array:
    offsets = pa.array(list(range(0, 2 * n + 1, 2)), pa.int32()).buffers()[1]
    return pa.Array.from_buffers(pa.string(), n, [None, offsets, pa.py_buffer(b"\xff\xfe" * n)])


# ---------------------------------------------------------------------- raw HTTP/1.1 client
class Connection:
    """One keep-alive HTTP/1.1 connection (asyncio streams: cheap enough to leave the CPU to the server)."""

    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.opened = 0

    async def request(self, ctype: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port, limit=2**22)
            self.opened += 1
        assert self.reader is not None
        self.writer.write(b"POST /predict HTTP/1.1\r\nHost: bench\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
                          % (ctype.encode(), len(body)) + body)
        try:
            await self.writer.drain()
        except ConnectionError:
            pass  # the server answered early and stopped reading: its answer is still there to read
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v for k, v in (x.split(": ", 1) for x in lines[1:] if x)}
        payload = await self.reader.readexactly(int(headers.get("content-length", 0)))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return int(lines[0].split()[1]), headers, payload

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def hang_up_mid_body(port: int) -> int:
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /predict HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: 9000\r\n\r\n[{\"a\"")
    await writer.drain()
    writer.close()
    return 0  # no answer expected


async def not_http(port: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x16\x03\x01 this is not HTTP\r\n\r\n")
    await writer.drain()
    status = int((await reader.readline()).split()[1] or 0)
    writer.close()
    return status


async def slowloris(port: int, deadline: float, answers: Counter[int]) -> None:
    """Trickle a request's headers a byte at a time; count what the server answers, start over."""
    while time.perf_counter() < deadline:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"POST /predict HTTP/1.1\r\nHost: bench\r\n")
            while time.perf_counter() < deadline:
                writer.write(b"X")
                await writer.drain()
                try:
                    line = await asyncio.wait_for(reader.readline(), 0.5)
                except asyncio.TimeoutError:
                    continue
                answers[int(line.split()[1]) if line else 0] += 1
                break
        except ConnectionError:
            answers[0] += 1
        finally:
            writer.close()


# ---------------------------------------------------------------------- the run
class Tally:
    def __init__(self) -> None:
        self.good_sent = self.good_ok = self.good_lost = self.wrong = self.server_errors = 0
        self.max_diff = 0.0
        self.latencies: list[float] = []
        self.bad_status: dict[str, Counter[int]] = defaultdict(Counter)
        self.transport_errors: Counter[str] = Counter()


def compare(ctype: str, payload: bytes, expected: dict[str, np.ndarray]) -> float:
    """Largest |answer - expected| over every task and row."""
    if ctype == ARROW:
        table = pa.ipc.open_stream(payload).read_all()
        got = {k: np.asarray(table.column(k).to_pylist(), dtype=np.float64) for k in expected}
    else:
        got = {k: np.asarray(v, dtype=np.float64) for k, v in json.loads(payload)["outputs"].items()}
    return max(float(np.max(np.abs(got[k] - v))) for k, v in expected.items())


async def client(k: int, port: int, deadline: float, good: list[tuple[Request, dict[str, np.ndarray]]],
                 bad: list[tuple[str, Request]], share: float, tally: Tally, conns: list[Connection]) -> None:
    rng = random.Random(k)
    conn = Connection(port)
    conns.append(conn)
    turn = k
    while time.perf_counter() < deadline:
        if rng.random() < share:
            turn += 1
            kind, (ctype, body) = bad[turn % len(bad)]
            try:
                if kind == "hang_up_mid_body":
                    status = await hang_up_mid_body(port)
                elif kind == "not_http":
                    status = await not_http(port)
                else:
                    status = (await conn.request(ctype, body))[0]
            except (ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
                tally.transport_errors[f"bad:{kind}:{type(exc).__name__}"] += 1
                conn.close()
                continue
            tally.bad_status[kind][status] += 1
            tally.server_errors += status >= 500
            continue
        (ctype, body), expected = good[rng.randrange(len(good))]
        tally.good_sent += 1
        started = time.perf_counter()
        try:
            status, _, payload = await conn.request(ctype, body)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
            tally.good_lost += 1
            tally.transport_errors[f"good:{type(exc).__name__}"] += 1
            conn.close()
            continue
        tally.latencies.append(time.perf_counter() - started)
        tally.server_errors += status >= 500
        if status != 200:
            tally.good_lost += 1
            continue
        tally.good_ok += 1
        diff = compare(ctype, payload, expected)
        tally.max_diff = max(tally.max_diff, diff)
        tally.wrong += diff > 1e-5
    conn.close()


async def drive(port: int, args: argparse.Namespace, good: list[tuple[Request, dict[str, np.ndarray]]],
                bad: list[tuple[str, Request]]) -> tuple[Tally, Counter[int], int, float]:
    tally, slow_answers, conns = Tally(), Counter[int](), []
    started = time.perf_counter()
    deadline = started + args.seconds
    await asyncio.gather(
        *[client(k, port, deadline, good, bad, args.bad_share, tally, conns) for k in range(args.clients)],
        *[slowloris(port, deadline, slow_answers) for _ in range(args.slowloris)],
    )
    return tally, slow_answers, sum(c.opened for c in conns), time.perf_counter() - started


def good_requests(predictor: Predictor, rng: random.Random) -> list[tuple[Request, dict[str, np.ndarray]]]:
    inputs = predictor.metadata["inputs"]
    out = []
    for n, count, ctype in ((1, 48, JSON), (8, 8, JSON), (8, 8, ARROW)):
        for _ in range(count):
            rows = make_rows(inputs, n, rng)
            body = ipc(arrow_table(inputs, rows)) if ctype == ARROW else json.dumps(rows).encode()
            out.append(((ctype, body), {k: np.asarray(v, np.float64) for k, v in predictor.predict_rows(rows).items()}))
    return out


def traffic(export_dir: Path) -> tuple[list[tuple[Request, dict[str, np.ndarray]]], list[tuple[str, Request]]]:
    """The good requests (answers checked against in-process onnxruntime) and every malformed kind,
    hang-ups and non-HTTP included; seeded, so runs send the same bodies."""
    rng = random.Random(0)
    predictor = Predictor(export_dir, intra_threads=1)
    good = good_requests(predictor, rng)
    kinds = bad_requests(predictor.metadata["inputs"], rng)
    return good, [*kinds.items(), ("hang_up_mid_body", (JSON, b"")), ("not_http", (JSON, b""))]


def start_server(export_dir: Path, port: int, workers: int, log_prefix: str) -> tuple[subprocess.Popen, Any]:
    """The server under test, with the limits the malformed kinds probe; its output goes to a temp log."""
    log = tempfile.NamedTemporaryFile(prefix=log_prefix, suffix=".log", delete=False)
    server = subprocess.Popen(
        [sys.executable, "-m", "serving", str(export_dir), "--port", str(port), "--threads", "1", "--no-spin",
         "--max-body-mb", str(MAX_BODY / 2**20), "--max-request-rows", str(MAX_ROWS), "--header-timeout", "2",
         "--body-timeout", "5", "--workers", str(workers), "--log-level", "warning"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )
    return server, log


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--export-dir", type=Path, required=True)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--bad-share", type=float, default=0.1)
    p.add_argument("--slowloris", type=int, default=8, help="connections trickling headers during the run")
    p.add_argument("--server-workers", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "exports" / "serving_hostile.json")
    args = p.parse_args()

    good, bad = traffic(args.export_dir)
    port = free_port()
    server, log = start_server(args.export_dir, port, args.server_workers, "serving-hostile-")
    try:
        asyncio.run(_wait_ready(port))
        cpu_before = process_tree_cpu(server.pid)
        tally, slow_answers, opened, wall = asyncio.run(drive(port, args, good, bad))
        cpu = process_tree_cpu(server.pid) - cpu_before
        healthy = asyncio.run(_healthy_after(port, good[0]))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    text = Path(log.name).read_text(errors="replace")
    lat = np.asarray(tally.latencies) * 1000
    bad_total = sum(sum(c.values()) for c in tally.bad_status.values())
    results = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "export": args.export_dir.name, "clients": args.clients, "seconds": round(wall, 1), "bad_share": args.bad_share,
        "server_workers": args.server_workers, "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "good_sent": tally.good_sent, "good_ok": tally.good_ok, "good_lost": tally.good_lost,
        "wrong_answers": tally.wrong, "max_abs_diff": tally.max_diff, "server_5xx": tally.server_errors,
        "bad_sent": bad_total, "bad_kinds": len(bad),
        "bad_statuses": {k: dict(sorted(v.items())) for k, v in sorted(tally.bad_status.items())},
        "transport_errors": dict(tally.transport_errors), "connections_opened": opened,
        "slowloris_answers": dict(slow_answers),
        "good_p50_ms": round(float(np.percentile(lat, 50)), 2) if lat.size else None,
        "good_p99_ms": round(float(np.percentile(lat, 99)), 2) if lat.size else None,
        "requests_per_s": round((tally.good_sent + bad_total) / wall, 1),
        "server_cpu_ms_per_request": round(1000 * cpu / max(tally.good_sent + bad_total, 1), 3),
        "healthy_after": healthy,
        "log_error_lines": sum(" ERROR" in line or line.startswith("ERROR") for line in text.splitlines()),
        "log_tracebacks": text.count("Traceback"),
        "server_log": log.name,
    }
    print(json.dumps(results, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    clean = (tally.good_lost == tally.wrong == tally.server_errors == results["log_tracebacks"]
             == results["log_error_lines"] == 0 and healthy and not tally.transport_errors)
    print("CLEAN" if clean else "NOT CLEAN")
    return 0 if clean else 1


async def _wait_ready(port: int) -> None:
    for _ in range(300):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /ready HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            line = await reader.readline()
            writer.close()
            if line.split()[1:2] == [b"200"]:
                return
        except (ConnectionError, IndexError):
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("server not ready in 60 s")


async def _healthy_after(port: int, good: tuple[Request, dict[str, np.ndarray]]) -> bool:
    conn = Connection(port)
    try:
        (ctype, body), expected = good
        status, _, payload = await conn.request(ctype, body)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /ready HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        ready = (await reader.readline()).split()[1] == b"200"
        writer.close()
        return status == 200 and compare(ctype, payload, expected) <= 1e-5 and ready
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
