"""Throughput and memory of ``recsys-mtl score`` against the bare onnxruntime session.

Run (from the repository root), one step per invocation so that each can hold its own CPU slot;
every step merges its numbers into ``--out``/results.json and prints the table so far::

    python benchmarks/score_throughput.py --rows 5000000 --out /tmp/score_bench --step bare
    python benchmarks/score_throughput.py --rows 5000000 --out /tmp/score_bench --step score1
    python benchmarks/score_throughput.py --rows 5000000 --out /tmp/score_bench --step score2
    python benchmarks/score_throughput.py --rows 5000000 --out /tmp/score_bench --step rss --rss-rows 100000 1000000

What it does:

1. exports an MMoE of the synthetic pipeline's size (4 experts × [32], towers [16]; weights
   untrained and jittered: speed does not depend on them) with the preprocessing in the graph;
2. writes ``--rows`` generated synthetic rows (13 raw columns, one a list of tags) to Parquet in
   row groups of 65,536, generated in chunks so the writer never holds them all;
3. ``bare``: ``onnxruntime.InferenceSession.run`` on feeds built beforehand (in memory) from the
   first ``--bare-rows`` rows, in batches of 65,536, repeated to score ``--rows`` rows; one
   intra-op thread, as one ``score`` worker uses with ``--threads 1``. Also the bare session fed
   from Arrow tables already in memory (the server's string conversion inside the loop);
4. ``score1`` / ``score2``: ``score`` in a fresh process at 1 worker (1 thread) and 2 workers (1
   thread each), reading the Parquet file and writing scores with a pass-through id column; rows/s
   from its own timer (model loading, reading, feed building, writing included), its CPU seconds
   (the process and its workers, from ``getrusage``) and its peak RSS (main process and largest worker);
5. ``rss``: peak RSS of 1-worker ``score`` as the input grows (``--rss-rows``), sampled from /proc.

Wall-clock rows/s on a shared machine depend on what else runs (a process at load 4 on 2 cores
gets about half a core), so every path is also given in **rows per CPU-second**, which the
load does not change much; the ratios to the bare session are given on both.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ROW_GROUP = 65_536

SCORE_CHILD = r"""
import json, sys
from serving.batch_score import score
export, inp, out, workers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
r = score(export, [inp], out, keep=["id"], workers=workers, threads=1, overwrite=True, progress=False)
print(json.dumps({"rows": r.rows, "seconds": r.seconds, "rows_per_s": r.rows_per_second}))
"""


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def make_export(work: Path) -> Path:
    """An untrained (jittered) MMoE of the synthetic pipeline's size, exported with its preprocessing."""
    import polars as pl
    import torch
    import yaml

    from recsys_mtl.data.preprocess import Preprocessor
    from recsys_mtl.data.synthetic import SyntheticConfig, generate
    from recsys_mtl.export import export_run
    from recsys_mtl.models import ModelContext, build_model
    from recsys_mtl.spec import load_pipeline

    out = work / "export"
    if (out / "metadata.json").is_file():
        return out
    cfg, spec = load_pipeline(ROOT / "pipelines" / "synthetic_mmoe.yaml", [f"data.cache_dir={work / 'cache'}"])
    train: pl.DataFrame = generate(SyntheticConfig(rows=20_000, num_tasks=2, seed=1))
    pre = Preprocessor.fit(spec, train)
    torch.manual_seed(0)
    net = build_model(cfg.model.name, cfg.model.params, ModelContext(layout=pre.layout, tasks=spec.tasks))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    run = work / "run"
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    raw = cfg.model_dump(mode="json")
    raw["spec"] = str(run / "spec.yaml")
    (run / "pipeline.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    (run / "spec.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json", exclude_defaults=True), sort_keys=False))
    pre.save(run / "preprocessing.json")
    torch.save({"state_dict": {f"model.{k}": v for k, v in net.state_dict().items()}}, run / "checkpoints" / "best.ckpt")
    export_run(run, out, test=generate(SyntheticConfig(rows=2_000, num_tasks=2, seed=2)))
    return out


def write_rows(path: Path, rows: int, chunk: int = 262_144) -> Path:
    """``rows`` synthetic rows with an ``id`` column, generated and written ``chunk`` rows at a time."""
    import polars as pl

    from recsys_mtl.data.synthetic import SyntheticConfig, generate

    if path.is_file() and pq.ParquetFile(path).metadata.num_rows == rows:
        return path
    writer = None
    done = 0
    while done < rows:
        n = min(chunk, rows - done)
        df = generate(SyntheticConfig(rows=n, num_tasks=2, seed=100 + done // chunk)).with_columns(
            id=pl.int_range(done, done + n, dtype=pl.Int64))
        table = df.to_arrow()
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=ROW_GROUP)
        done += n
    assert writer is not None
    writer.close()
    return path


def bare_session(export: Path, inp: Path, rows: int, bare_rows: int) -> dict[str, Any]:
    """onnxruntime alone on feeds already in memory (1 intra-op thread), repeated to ``rows`` rows;
    then the same with the server's Arrow → feed conversion inside the loop (tables in memory)."""
    import onnxruntime as ort

    from serving.predictor import Predictor

    pred = Predictor(export, intra_threads=1, warmup=False)  # its schema builds the feeds; its session is not used
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(pred.model_path), opts, providers=["CPUExecutionProvider"])
    pf = pq.ParquetFile(inp)
    names = sorted(pred.schema.names)
    tables = []
    for batch in pf.iter_batches(batch_size=ROW_GROUP, columns=names):
        tables.append(pa.Table.from_batches([batch]))
        if sum(t.num_rows for t in tables) >= bare_rows:
            break
    feeds = [pred.schema.from_arrow(t, ROW_GROUP)[0] for t in tables]
    out: dict[str, Any] = {}
    for name, make in (("feeds", lambda k: feeds[k]), ("arrow", lambda k: pred.schema.from_arrow(tables[k], ROW_GROUP)[0])):
        for k in range(len(feeds)):  # warm-up: the arena grows on the first pass over each batch shape
            session.run(pred.tasks, make(k))
        done, started, cpu = 0, time.perf_counter(), time.process_time()
        while done < rows:
            for k in range(len(feeds)):
                session.run(pred.tasks, make(k))
                done += tables[k].num_rows
                if done >= rows:
                    break
        took, cpu = time.perf_counter() - started, time.process_time() - cpu
        out[name] = {"rows": done, "seconds": took, "cpu_seconds": cpu, "rows_per_s": done / took, "rows_per_cpu_s": done / cpu}
    return out


def breakdown(export: Path, inp: Path, batches: int = 8) -> dict[str, float]:
    """CPU seconds (all threads of this process) per 65,536-row batch in each stage of ``score``:
    read, the server's feed building (sequence inputs apart from the rest), onnxruntime, Arrow
    output; 1 onnxruntime thread, same process. CPU time, not wall time: a stage's wall time on
    a loaded machine mostly measures the wait for a core."""
    import pyarrow.parquet as pq

    from serving.batch_score import output_columns
    from serving.predictor import Predictor

    pred = Predictor(export, intra_threads=1, warmup=True)
    schema = pred.schema
    pf = pq.ParquetFile(inp)
    names = [c for c in pf.schema_arrow.names if c in schema.names]
    try:  # as score's reader opens it (serving code before dictionary reading: plain strings)
        from serving.batch_inputs import dictionary_paths
    except ImportError:
        pass
    else:
        pf = pq.ParquetFile(inp, read_dictionary=dictionary_paths(pf, names))
    spent = {"read": 0.0, "feed_sequences": 0.0, "feed_other": 0.0, "onnxruntime": 0.0, "output": 0.0}
    pred.predict(schema.from_arrow(pf.read_row_group(0, columns=names), ROW_GROUP)[0])  # the arena grows here
    for g in range(min(batches, pf.metadata.num_row_groups)):
        t0 = time.process_time()
        table = pf.read_row_group(g, columns=names, use_threads=False)
        t1 = time.process_time()
        for spec in schema.inputs:  # the per-kind converters from_arrow applies, timed apart
            s0 = time.process_time()
            schema._arrow[spec.kind](spec, table.column(spec.name))
            spent["feed_sequences" if spec.kind == "sequence" else "feed_other"] += time.process_time() - s0
        feed = schema.from_arrow(table, table.num_rows)[0]
        t2 = time.process_time()
        out = pred.predict(feed)
        t3 = time.process_time()
        output_columns(out, pred.tasks)
        t4 = time.process_time()
        spent["read"] += t1 - t0
        spent["onnxruntime"] += t3 - t2
        spent["output"] += t4 - t3
    n = min(batches, pf.metadata.num_row_groups)
    return {k: v / n for k, v in spent.items()}


def run_score(export: Path, inp: Path, out: Path, workers: int) -> dict[str, Any]:
    """``score`` in a fresh process; its peak RSS and its largest worker's, sampled from /proc every
    50 ms (ru_maxrss would not do: Linux carries a parent's high-water mark across fork + exec)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen([sys.executable, "-c", SCORE_CHILD, str(export), str(inp), str(out), str(workers)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    main_peak = worker_peak = total_peak = 0
    while proc.poll() is None:
        main = _rss_kib(proc.pid)
        kids = [_rss_kib(c) for c in _children(proc.pid)]
        kids = [k for k in kids if k > 0]
        main_peak = max(main_peak, main)
        worker_peak = max([worker_peak, *kids])
        total_peak = max(total_peak, main + sum(kids))
        time.sleep(0.05)
    stdout, stderr = proc.communicate()
    if proc.returncode:
        raise SystemExit(stderr)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the score process and its reaped workers
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    r = json.loads(stdout.strip().splitlines()[-1])
    return {**r, "cpu_seconds": cpu, "rows_per_cpu_s": r["rows"] / cpu, "rss_main_mib": main_peak / 1024,
            "rss_worker_mib": worker_peak / 1024, "rss_total_mib": total_peak / 1024}


STEPS = ("bare", "score1", "score2", "rss")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--bare-rows", type=int, default=262_144, help="rows whose feeds the bare session holds in memory")
    ap.add_argument("--rss-rows", type=int, nargs="*", default=[100_000, 1_000_000])
    ap.add_argument("--out", type=Path, default=Path("/tmp/score_bench"))
    ap.add_argument("--step", choices=STEPS, nargs="*", default=list(STEPS), help="which measurements to run (default: all)")
    ap.add_argument("--breakdown-only", action="store_true", help="only the per-stage seconds of a batch")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    export = make_export(args.out)
    inp = write_rows(args.out / f"rows_{args.rows}.parquet", args.rows)
    if args.breakdown_only:
        print(f"load average {os.getloadavg()[0]:.1f}; CPU seconds per 65,536-row batch:",
              json.dumps({k: round(v, 3) for k, v in breakdown(export, inp).items()}))
        return
    path = args.out / "results.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    if results.get("rows") != args.rows:
        results = {"rows": args.rows, "cpus": os.cpu_count(), "load": {}, "rss": {}}
    for step in args.step:
        load = os.getloadavg()
        if step == "bare":
            results["bare"] = bare_session(export, inp, args.rows, args.bare_rows)
        elif step in ("score1", "score2"):
            results[step] = run_score(export, inp, args.out / "scores.parquet", int(step[-1]))
        else:
            for n in args.rss_rows:
                small = inp if n == args.rows else write_rows(args.out / f"rows_{n}.parquet", n)
                results["rss"][str(n)] = run_score(export, small, args.out / "scores_rss.parquet", 1)
        results["load"][step] = [load[0], os.getloadavg()[0]]
        path.write_text(json.dumps(results, indent=1))
    print_table(results)


def print_table(results: dict[str, Any]) -> None:
    print(f"rows {results['rows']:,}; load average before / after each step: "
          + ", ".join(f"{k} {a:.1f}/{b:.1f}" for k, (a, b) in results["load"].items()))
    print("| path | rows/s (wall) | vs bare, per process | rows per CPU-second | vs bare, per CPU-second | "
          "peak RSS main / largest worker / all |")
    print("|---|---|---|---|---|---|")
    bare = results.get("bare", {}).get("feeds")
    for key, label in (("feeds", "bare onnxruntime session, 1 thread, numpy feeds in memory"),
                       ("arrow", "bare session fed from Arrow tables in memory (the server's conversion in the loop)")):
        r = results.get("bare", {}).get(key)
        if r and bare:
            print(f"| {label} | {r['rows_per_s']:,.0f} | {r['rows_per_s'] / bare['rows_per_s']:.2f} | "
                  f"{r['rows_per_cpu_s']:,.0f} | {r['rows_per_cpu_s'] / bare['rows_per_cpu_s']:.2f} | – |")
    for workers in (1, 2):
        r = results.get(f"score{workers}")
        if r and bare:
            print(f"| score --workers {workers} --threads 1 | {r['rows_per_s']:,.0f} | "
                  f"{r['rows_per_s'] / workers / bare['rows_per_s']:.2f} | {r['rows_per_cpu_s']:,.0f} | "
                  f"{r['rows_per_cpu_s'] / bare['rows_per_cpu_s']:.2f} | "
                  f"{r['rss_main_mib']:.0f} / {r['rss_worker_mib']:.0f} / {r['rss_total_mib']:.0f} MiB |")
    if results["rss"]:
        print("\n| input rows | score rows/s (1 worker) | peak RSS |")
        print("|---|---|---|")
        for n, r in sorted(results["rss"].items(), key=lambda kv: int(kv[0])):
            print(f"| {int(n):,} | {r['rows_per_s']:,.0f} | {r['rss_main_mib']:.0f} MiB |")


if __name__ == "__main__":
    main()
