"""Soak test of the HTTP server: many keep-alive clients, a share of malformed requests, two server
processes, for minutes; resident memory and latency over time.

Run (any export folder)::

    python benchmarks/serving_soak.py --export-dir exports/<x> [--minutes 10] [--interval 10]
                                      [--clients 64] [--bad-share 0.1] [--server-workers 2]

The clients, request bodies and malformed kinds are :mod:`benchmarks.serving_hostile`'s (JSON of 1
or 8 rows, Arrow of 8 rows; every malformed kind in turn, hang-ups and non-HTTP included; every
good answer compared with in-process onnxruntime). Every ``--interval`` seconds a sample records:
the resident set size of the server's process tree (the supervisor and its ``--server-workers``
workers, from ``/proc``), p50 / p99 latency of the good requests answered in that interval, and the
running counts of good requests sent and lost. Reported: the samples, and whether RSS and p99 stay
flat (max / min over the samples from minute 2 on within ``--flat`` (default 10 %)), zero good
requests lost, zero wrong answers, zero 5xx. Exit status 1 when not clean.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.serving_hostile import (  # noqa: E402
    Tally, _wait_ready, client, start_server, traffic,
)
from benchmarks.serving_load import free_port  # noqa: E402


def tree_rss_mib(pid: int) -> float:
    """Resident set size (MiB) of ``pid`` and its descendants."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            todo += [int(c) for t in Path(f"/proc/{p}/task").iterdir() for c in (t / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total / 1024


async def monitor(pid: int, tally: Tally, started: float, deadline: float, interval: float, samples: list[dict[str, Any]]) -> None:
    """Every ``interval`` s: the server tree's RSS, latency percentiles of the interval, running counts."""
    seen = 0
    while time.perf_counter() < deadline:
        await asyncio.sleep(min(interval, max(deadline - time.perf_counter(), 0.01)))
        lat = np.asarray(tally.latencies[seen:]) * 1000
        seen = len(tally.latencies)
        samples.append({
            "t_s": round(time.perf_counter() - started, 1),
            "rss_mib": round(tree_rss_mib(pid), 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 2) if lat.size else None,
            "p99_ms": round(float(np.percentile(lat, 99)), 2) if lat.size else None,
            "good_answered": int(lat.size),
            "good_sent_total": tally.good_sent,
            "good_lost_total": tally.good_lost,
            "load_1m": round(os.getloadavg()[0], 2),
        })
        print(json.dumps(samples[-1]), flush=True)


async def soak(pid: int, port: int, args: argparse.Namespace, good: list, bad: list) -> tuple[Tally, list[dict[str, Any]]]:  # type: ignore[type-arg]
    tally, samples, conns = Tally(), [], []  # type: ignore[var-annotated]
    started = time.perf_counter()
    deadline = started + args.minutes * 60
    await asyncio.gather(
        monitor(pid, tally, started, deadline, args.interval, samples),
        *[client(k, port, deadline, good, bad, args.bad_share, tally, conns) for k in range(args.clients)],
    )
    return tally, samples


def spread(values: list[float]) -> float | None:
    """max / min - 1 over ``values`` (None when fewer than two)."""
    return round(max(values) / min(values) - 1, 3) if len(values) >= 2 and min(values) > 0 else None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--export-dir", type=Path, required=True)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--bad-share", type=float, default=0.1)
    p.add_argument("--server-workers", type=int, default=2)
    p.add_argument("--steady-after", type=float, default=2.0, help="minutes of warm-up left out of the flatness figures")
    p.add_argument("--flat", type=float, default=0.10, help="largest max/min - 1 of RSS and p99 after the warm-up")
    p.add_argument("--out", type=Path, default=ROOT / "exports" / "serving_soak.json")
    args = p.parse_args()

    good, bad = traffic(args.export_dir)
    port = free_port()
    server, log = start_server(args.export_dir, port, args.server_workers, "serving-soak-")
    try:
        asyncio.run(_wait_ready(port))
        tally, samples = asyncio.run(soak(server.pid, port, args, good, bad))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    text = Path(log.name).read_text(errors="replace")
    steady = [s for s in samples if s["t_s"] >= args.steady_after * 60 and s["p99_ms"] is not None]
    results = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "export": args.export_dir.name, "clients": args.clients, "minutes": args.minutes, "bad_share": args.bad_share,
        "server_workers": args.server_workers, "interval_s": args.interval,
        "good_sent": tally.good_sent, "good_ok": tally.good_ok, "good_lost": tally.good_lost, "wrong_answers": tally.wrong,
        "server_5xx": tally.server_errors, "transport_errors": dict(tally.transport_errors),
        "bad_sent": sum(sum(c.values()) for c in tally.bad_status.values()),
        "steady_samples": len(steady),
        "rss_spread_after_warmup": spread([s["rss_mib"] for s in steady]),
        "p99_spread_after_warmup": spread([s["p99_ms"] for s in steady]),
        "log_tracebacks": text.count("Traceback"),
        "samples": samples,
    }
    print(json.dumps({k: v for k, v in results.items() if k != "samples"}, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    flat = all(x is not None and x <= args.flat for x in (results["rss_spread_after_warmup"], results["p99_spread_after_warmup"]))
    clean = tally.good_lost == tally.wrong == tally.server_errors == results["log_tracebacks"] == 0
    print(("CLEAN" if clean else "NOT CLEAN") + ("; flat" if flat else "; not flat (or too few samples after the warm-up)"))
    return 0 if clean and flat else 1


if __name__ == "__main__":
    sys.exit(main())
