"""Load benchmark of the exported model: in-process ONNX Runtime, torch eager, and HTTP.

Run (census-income, from the repository root)::

    python benchmarks/serving_load.py --fit-epochs 3            # fits census_mmoe, exports, measures
    python benchmarks/serving_load.py --run-dir runs/<run>      # an existing run folder
    python benchmarks/serving_load.py --export-dir exports/<x>  # an existing export (+ --run-dir for torch)

Measured on the run's test split rows:

* in-process: ``Predictor.predict`` (raw columns in, preprocessing in the graph) per call at batch
  1, 64, 1024: p50 / p99 latency and rows/s; the same for the int8 variant;
* torch eager on the same rows: the model alone on pre-encoded tensors, and Python preprocessing
  (``Preprocessor.transform``) + model, the honest comparison with the raw-column ONNX graph;
* HTTP: ``python -m serving`` on loopback (``--server-workers`` processes), 64 concurrent
  keep-alive connections, JSON bodies of 1, 64 and 1024 rows (and Arrow IPC at 1024): per-request
  p50 / p99 latency, rows/s, and the server's CPU time per request (all its processes).

The load generator is ``wrk`` (C, one thread) when it is on the PATH (``apt-get install wrk``),
else 64 httpx async clients, which cost more CPU than the server and so measure mostly themselves.
Client and server share the machine's cores either way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import tempfile
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import numpy as np
import polars as pl
import pyarrow as pa
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recsys_mtl.data.sources import load_splits  # noqa: E402
from recsys_mtl.export import export_run, load_run  # noqa: E402
from recsys_mtl.export.model_graph import ScoringHead  # noqa: E402
from recsys_mtl.export.preprocess_graph import encoded_names, raw_inputs  # noqa: E402
from recsys_mtl.export.raw import raw_feed  # noqa: E402
from serving.predictor import Predictor  # noqa: E402

BATCHES = (1, 64, 1024)


def stats(latencies: list[float], rows_per_call: int, wall: float, cpu: float | None = None) -> dict[str, float]:
    lat = np.asarray(latencies) * 1000
    extra = {} if cpu is None else {"cpu_ms_per_call": round(1000 * cpu / len(latencies), 3),
                                    "rows_per_cpu_s": round(rows_per_call * len(latencies) / cpu)}
    return {**extra,
        "p50_ms": round(float(np.percentile(lat, 50)), 3),
        "p99_ms": round(float(np.percentile(lat, 99)), 3),
        "rows_per_s": round(rows_per_call * len(latencies) / wall),
        "calls": len(latencies),
    }


def timed(fn: Callable[[int], Any], calls: int, rows: int, seconds: float) -> dict[str, float]:
    """Call ``fn(i)`` until ``calls`` calls or ``seconds`` elapsed (after 3 warm-up calls)."""
    for i in range(3):
        fn(i)
    lat: list[float] = []
    start, cpu = time.perf_counter(), time.process_time()
    i = 0
    while i < calls and time.perf_counter() - start < seconds:
        t = time.perf_counter()
        fn(i)
        lat.append(time.perf_counter() - t)
        i += 1
    # CPU time of this process (all its threads): robust to other processes sharing the cores
    return stats(lat, rows, time.perf_counter() - start, time.process_time() - cpu)


def slices(n_rows: int, batch: int, count: int = 16) -> list[slice]:
    starts = np.linspace(0, n_rows - batch, count).astype(int)
    return [slice(s, s + batch) for s in starts]


def in_process(export_dir: Path, test: pl.DataFrame, variant: str, seconds: float, threads: int, spin: bool) -> dict[str, Any]:
    pred = Predictor(export_dir, variant=variant, intra_threads=threads, allow_spinning=spin)
    feed = raw_feed(raw_inputs(load_run(pred.metadata["run_dir"]).preprocessor), test)
    out = {}
    for b in BATCHES:
        feeds = [{k: v[s] for k, v in feed.items()} for s in slices(test.height, b)]
        out[b] = timed(lambda i: pred.predict(feeds[i % len(feeds)]), 20000, b, seconds)
    return out


def concurrent_callers(export_dir: Path, test: pl.DataFrame, callers: int, seconds: float, batch: int = 1024) -> dict[str, Any]:
    """``callers`` threads share one session (one intra-op thread each), each calling ``predict``
    in a loop: the throughput of a process that scores independent batches on every core.
    onnxruntime releases the GIL inside ``run``, so the callers overlap."""
    from concurrent.futures import ThreadPoolExecutor

    pred = Predictor(export_dir, intra_threads=1)
    feed = raw_feed(raw_inputs(load_run(pred.metadata["run_dir"]).preprocessor), test)
    feeds = [{k: v[s] for k, v in feed.items()} for s in slices(test.height, batch)]
    deadline = time.perf_counter() + seconds

    def loop(k: int) -> list[float]:
        lat, i = [], k
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            pred.predict(feeds[i % len(feeds)])
            lat.append(time.perf_counter() - t)
            i += callers
        return lat

    start, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(callers) as pool:
        lat = [x for part in pool.map(loop, range(callers)) for x in part]
    return {"callers": callers, **stats(lat, batch, time.perf_counter() - start, time.process_time() - cpu)}


def torch_eager(run_dir: Path, test: pl.DataFrame, seconds: float) -> dict[str, Any]:
    run = load_run(run_dir)
    pre = run.preprocessor
    names = encoded_names(pre)
    head = ScoringHead(run.model, run.spec.tasks, names).eval()
    cols = pre.transform(test).columns()
    model_only, with_pre = {}, {}
    with torch.inference_mode():
        for b in BATCHES:
            ss = slices(test.height, b)
            inputs = [[cols[n][s] for n in names] for s in ss]
            model_only[b] = timed(lambda i: head(*inputs[i % len(ss)]), 20000, b, seconds)
            frames = [test[s] for s in ss]

            def full(i: int) -> None:
                enc = pre.transform(frames[i % len(frames)], "bench").columns()
                head(*[enc[n] for n in names])

            with_pre[b] = timed(full, 20000, b, seconds)
    return {"model_only": model_only, "preprocess_and_model": with_pre}


def json_rows(feed: dict[str, np.ndarray], inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Raw feed → JSON request rows (NaN → null, "" → null)."""
    n = len(next(iter(feed.values())))
    cols: dict[str, list[Any]] = {}
    for i in inputs:
        v = feed[i["name"]]
        if i["kind"] == "numeric":
            cols[i["name"]] = [None if np.isnan(x) else float(x) for x in v]
        elif i["kind"] == "sequence":
            cols[i["name"]] = [[x for x in row if x != ""] for row in v.tolist()]
        else:
            cols[i["name"]] = [x if x != "" else None for x in v.tolist()]
    return [{k: c[r] for k, c in cols.items()} for r in range(n)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def http_load(url: str, bodies: list[bytes], content_type: str, rows: int, clients: int, seconds: float) -> dict[str, float]:
    lat: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        for b in bodies[:3]:
            await client.post("/predict", content=b, headers={"content-type": content_type})
        deadline = time.perf_counter() + seconds

        async def worker(k: int) -> None:
            nonlocal errors
            i = k
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                r = await client.post("/predict", content=bodies[i % len(bodies)], headers={"content-type": content_type})
                lat.append(time.perf_counter() - t)
                errors += r.status_code != 200
                i += clients

        start = time.perf_counter()
        await asyncio.gather(*[worker(k) for k in range(clients)])
        wall = time.perf_counter() - start
    out = stats(lat, rows, wall)
    out["errors"] = errors
    out["client"] = "httpx"
    out["requests"] = len(lat)
    return out


# wrk script: the bodies are read from files at start-up (they may be binary Arrow IPC), turned
# into ready requests once, sent round-robin; `done` prints exact percentiles as one JSON line
WRK_LUA = """
local paths = {%(paths)s}
local reqs = {}
for i, p in ipairs(paths) do
  local f = assert(io.open(p, "rb")); local body = f:read("*a"); f:close()
  reqs[i] = wrk.format("POST", "/predict", {["Content-Type"] = "%(ctype)s"}, body)
end
local n = 0
request = function() n = n %% #reqs + 1; return reqs[n] end
done = function(s, latency, requests)
  local e = s.errors
  io.write(string.format('WRKJSON {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, "non2xx": %%d, "socket_errors": %%d}\\n',
    s.requests, s.duration, latency:percentile(50), latency:percentile(99), e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def wrk_load(url: str, bodies: list[bytes], content_type: str, rows: int, clients: int, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, b in enumerate(bodies):
            paths.append(Path(tmp) / f"body{i}")
            paths[-1].write_bytes(b)
        script = Path(tmp) / "load.lua"
        script.write_text(WRK_LUA % {"paths": ", ".join(f'"{p}"' for p in paths), "ctype": content_type})
        cmd = ["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--timeout", "30s", "-s", str(script), url + "/predict"]
        text = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rec = json.loads(next(line for line in text.splitlines() if line.startswith("WRKJSON "))[8:])
    wall = rec["duration_us"] / 1e6
    return {"p50_ms": rec["p50_us"] / 1000, "p99_ms": rec["p99_us"] / 1000, "rows_per_s": rec["requests"] * rows / wall,
            "requests": rec["requests"], "errors": rec["non2xx"] + rec["socket_errors"], "client": "wrk"}


def process_tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and its descendants (the uvicorn workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            todo += [int(c) for t in Path(f"/proc/{p}/task").iterdir()
                     for c in (t / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def load(url: str, bodies: list[bytes], content_type: str, rows: int, clients: int, seconds: float, server_pid: int) -> dict[str, float]:
    before = process_tree_cpu(server_pid)
    if shutil.which("wrk"):
        out = wrk_load(url, bodies, content_type, rows, clients, seconds)
    else:
        out = asyncio.run(http_load(url, bodies, content_type, rows, clients, seconds))
    spent = process_tree_cpu(server_pid) - before
    out["server_cpu_ms_per_request"] = 1000 * spent / max(out["requests"], 1)
    return out


def arrow_body(rows: list[dict[str, Any]]) -> bytes:
    table = pa.Table.from_pylist(rows)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def over_http(export_dir: Path, test: pl.DataFrame, clients: int, seconds: float, threads: int, spin: bool,
              workers: int = 1, sweep: tuple[int, ...] = ()) -> dict[str, Any]:
    pred = Predictor(export_dir, warmup=False)
    inputs = pred.metadata["inputs"]
    feed = raw_feed(raw_inputs(load_run(pred.metadata["run_dir"]).preprocessor), test)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "serving", str(export_dir), "--port", str(port), "--threads", str(threads),
         "--log-level", "warning", "--workers", str(workers), *(["--no-spin"] if not spin else [])],
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(url + "/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        out: dict[str, Any] = {}
        for b in BATCHES:
            bodies = [json.dumps(json_rows({k: v[s] for k, v in feed.items()}, inputs)).encode() for s in slices(test.height, b, 8)]
            out[f"json_{b}"] = load(url, bodies, "application/json", b, clients, seconds, server.pid)
            print(f"  http json batch {b}: {out[f'json_{b}']}", flush=True)
            if b == 1:  # single-row latency against concurrency: where the p99 budget holds
                for c in sweep:
                    out[f"json_1_clients_{c}"] = load(url, bodies, "application/json", 1, c, seconds, server.pid)
                    print(f"  http json batch 1, {c} clients: {out[f'json_1_clients_{c}']}", flush=True)
        s = slices(test.height, 1024, 4)
        bodies = [arrow_body(json_rows({k: v[x] for k, v in feed.items()}, inputs)) for x in s]
        out["arrow_1024"] = load(url, bodies, "application/vnd.apache.arrow.stream", 1024, clients, seconds, server.pid)
        print(f"  http arrow batch 1024: {out['arrow_1024']}", flush=True)
        out["server_batching"] = httpx.get(url + "/metadata").json()["serving"]["batching"]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    return out


def in_process_all(results: dict[str, Any], export_dir: Path, run_dir: Path, test: pl.DataFrame,
                   args: argparse.Namespace) -> None:
    for variant in json.loads((export_dir / "metadata.json").read_text())["files"]:
        results[f"onnx_{variant}_in_process"] = in_process(export_dir, test, variant, args.seconds, args.threads, not args.no_spin)
        print(f"onnx {variant} in-process: {results[f'onnx_{variant}_in_process']}", flush=True)
    cores = len(os.sched_getaffinity(0))
    results["onnx_fp32_concurrent_1024"] = concurrent_callers(export_dir, test, cores, args.seconds)
    print(f"onnx fp32, {cores} concurrent callers, batch 1024: {results['onnx_fp32_concurrent_1024']}", flush=True)
    results["torch_eager"] = torch_eager(run_dir, test, args.seconds)
    print(f"torch eager: {results['torch_eager']}", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run-dir", type=Path)
    p.add_argument("--export-dir", type=Path)
    p.add_argument("--fit-epochs", type=int, default=3, help="when neither folder is given: fit census_mmoe this long")
    p.add_argument("--seconds", type=float, default=4.0, help="per measurement")
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--client-sweep", type=int, nargs="*", default=[1, 4, 16],
                   help="also measure single-row JSON at these concurrencies")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (in-process and server)")
    p.add_argument("--no-spin", action="store_true", help="onnxruntime threads sleep instead of spinning (shared cores)")
    p.add_argument("--server-workers", type=int, default=1, help="HTTP server processes (serve --workers)")
    p.add_argument("--skip-http", action="store_true")
    p.add_argument("--skip-in-process", action="store_true", help="HTTP measurements only")
    p.add_argument("--out", type=Path, default=ROOT / "exports" / "serving_load.json")
    args = p.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)  # torch eager gets the same thread budget as onnxruntime

    run_dir = args.run_dir
    if run_dir is None and args.export_dir is None:
        from recsys_mtl.spec import load_pipeline
        from recsys_mtl.train.fit import fit

        cfg, spec = load_pipeline(ROOT / "pipelines" / "census_mmoe.yaml",
                                  [f"trainer.max_epochs={args.fit_epochs}", "trainer.progress_bar=false", "runs_dir=runs/bench"])
        run_dir = fit(cfg, spec).run_dir
        print(f"fitted {run_dir}", flush=True)
    export_dir = args.export_dir
    if export_dir is None:
        export_dir = ROOT / "exports" / f"bench-{run_dir.name}"
        started = time.perf_counter()
        res = export_run(run_dir, export_dir, variants=("int8", "fp16"))
        print(f"exported {export_dir} in {time.perf_counter() - started:.1f} s; parity {res.metadata['parity']['max_abs_diff']:.3g}", flush=True)
    meta = json.loads((export_dir / "metadata.json").read_text())
    run_dir = run_dir or Path(meta["run_dir"])
    test = load_splits(load_run(run_dir).cfg.data).test

    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
        "export": str(export_dir),
        "test_rows": test.height,
        "onnx_threads": args.threads,
        "onnx_spinning": not args.no_spin,
        "load_average_at_start": list(os.getloadavg()),
        "parity": meta["parity"],
        "variants": {k: v["change"] for k, v in meta["variants"].items()},
    }
    if not args.skip_in_process:
        in_process_all(results, export_dir, run_dir, test, args)
    if not args.skip_http:
        results["http"] = over_http(export_dir, test, args.clients, args.seconds, args.threads, not args.no_spin,
                                    args.server_workers, tuple(args.client_sweep))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
