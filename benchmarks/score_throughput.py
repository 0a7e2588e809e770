"""Throughput and memory of ``recsys-mtl score`` against the bare onnxruntime session.

Run (from the repository root)::

    python benchmarks/score_throughput.py --rows 1000000 --out /tmp/score_bench

What it does:

1. exports an MMoE of the synthetic pipeline's size (4 experts × [32], towers [16]; weights
   untrained and jittered: speed does not depend on them) with the preprocessing in the graph;
2. writes ``--rows`` generated synthetic rows (13 raw columns, one a list of tags) to Parquet in
   row groups of 65,536, generated in chunks so the writer never holds them all;
3. the bare session: ``onnxruntime.InferenceSession.run`` on feeds built beforehand (in memory)
   from the first ``--bare-rows`` rows, in batches of 65,536, repeated to score ``--rows`` rows;
   one intra-op thread, as one ``score`` worker uses with ``--threads 1``;
4. ``score`` in a fresh process at 1 worker (1 thread) and 2 workers (1 thread each), reading the
   Parquet file and writing scores with a pass-through id column; rows/s from its own timer
   (model loading, reading, feed building, writing included) and its peak RSS (the main
   process and the largest worker);
5. peak RSS of 1-worker ``score`` as the input grows (``--rss-rows``), sampled from /proc.

Prints a Markdown table and writes ``results.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
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


def bare_session(export: Path, inp: Path, rows: int, bare_rows: int) -> dict[str, float]:
    """onnxruntime alone on feeds already in memory (1 intra-op thread), repeated to ``rows`` rows."""
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
    feeds = []
    for batch in pf.iter_batches(batch_size=ROW_GROUP, columns=names):
        feeds.append(pred.schema.from_arrow(pa.Table.from_batches([batch]), ROW_GROUP)[0])
        if sum(len(next(iter(f.values()))) for f in feeds) >= bare_rows:
            break
    session.run(pred.tasks, feeds[0])  # warm-up
    done, started = 0, time.perf_counter()
    while done < rows:
        for feed in feeds:
            session.run(pred.tasks, feed)
            done += len(next(iter(feed.values())))
            if done >= rows:
                break
    took = time.perf_counter() - started
    return {"rows": done, "seconds": took, "rows_per_s": done / took}


def breakdown(export: Path, inp: Path, batches: int = 4) -> dict[str, float]:
    """Seconds per 65,536-row batch in each stage of ``score``: read, the server's feed building
    (sequence inputs apart from the rest), onnxruntime, Arrow output; 1 thread, same process."""
    import pyarrow.parquet as pq

    from serving.batch_score import output_columns
    from serving.predictor import Predictor

    pred = Predictor(export, intra_threads=1, warmup=True)
    schema = pred.schema
    pf = pq.ParquetFile(inp)
    names = [c for c in pf.schema_arrow.names if c in schema.names]
    spent = {"read": 0.0, "feed_sequences": 0.0, "feed_other": 0.0, "onnxruntime": 0.0, "output": 0.0}
    for g in range(min(batches, pf.metadata.num_row_groups)):
        t0 = time.perf_counter()
        table = pf.read_row_group(g, columns=names)
        t1 = time.perf_counter()
        for spec in schema.inputs:  # the per-kind converters from_arrow applies, timed apart
            s0 = time.perf_counter()
            schema._arrow[spec.kind](spec, table.column(spec.name))
            spent["feed_sequences" if spec.kind == "sequence" else "feed_other"] += time.perf_counter() - s0
        feed = schema.from_arrow(table, table.num_rows)[0]
        t2 = time.perf_counter()
        out = pred.predict(feed)
        t3 = time.perf_counter()
        output_columns(out, pred.tasks)
        t4 = time.perf_counter()
        spent["read"] += t1 - t0
        spent["onnxruntime"] += t3 - t2
        spent["output"] += t4 - t3
    n = min(batches, pf.metadata.num_row_groups)
    return {k: v / n for k, v in spent.items()}


def run_score(export: Path, inp: Path, out: Path, workers: int) -> dict[str, Any]:
    """``score`` in a fresh process; its peak RSS and its largest worker's, sampled from /proc every
    50 ms (ru_maxrss would not do: Linux carries a parent's high-water mark across fork + exec)."""
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
    return {**json.loads(stdout.strip().splitlines()[-1]), "rss_main_mib": main_peak / 1024,
            "rss_worker_mib": worker_peak / 1024, "rss_total_mib": total_peak / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--bare-rows", type=int, default=262_144, help="rows whose feeds the bare session holds in memory")
    ap.add_argument("--rss-rows", type=int, nargs="*", default=[100_000, 300_000, 1_000_000])
    ap.add_argument("--out", type=Path, default=Path("/tmp/score_bench"))
    ap.add_argument("--breakdown-only", action="store_true", help="only the per-stage seconds of a batch")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    export = make_export(args.out)
    inp = write_rows(args.out / f"rows_{args.rows}.parquet", args.rows)
    if args.breakdown_only:
        print(f"load average {os.getloadavg()[0]:.1f}; seconds per 65,536-row batch:",
              json.dumps({k: round(v, 3) for k, v in breakdown(export, inp).items()}))
        return
    load = os.getloadavg()
    results: dict[str, Any] = {"rows": args.rows, "load_before": load, "cpus": os.cpu_count()}
    results["bare"] = bare_session(export, inp, args.rows, args.bare_rows)
    for workers in (1, 2):
        results[f"score_w{workers}"] = run_score(export, inp, args.out / "scores.parquet", workers)
    results["rss"] = {}
    for n in args.rss_rows:
        small = write_rows(args.out / f"rows_{n}.parquet", n)
        results["rss"][n] = run_score(export, small, args.out / "scores_rss.parquet", 1)
    results["load_after"] = os.getloadavg()
    (args.out / "results.json").write_text(json.dumps(results, indent=1))

    bare = results["bare"]["rows_per_s"]
    print(f"rows {args.rows:,}; load average before {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}, "
          f"after {results['load_after'][0]:.1f}")
    print("| path | rows/s | vs bare session (per process) | peak RSS main / largest worker / all |")
    print("|---|---|---|---|")
    print(f"| bare onnxruntime session, 1 thread, feeds in memory | {bare:,.0f} | 1.00 | – |")
    for workers in (1, 2):
        r = results[f"score_w{workers}"]
        print(f"| score --workers {workers} --threads 1 | {r['rows_per_s']:,.0f} | {r['rows_per_s'] / workers / bare:.2f} | "
              f"{r['rss_main_mib']:.0f} / {r['rss_worker_mib']:.0f} / {r['rss_total_mib']:.0f} MiB |")
    print("\n| input rows | score rows/s (1 worker) | peak RSS |")
    print("|---|---|---|")
    for n, r in results["rss"].items():
        print(f"| {int(n):,} | {r['rows_per_s']:,.0f} | {r['rss_main_mib']:.0f} MiB |")


if __name__ == "__main__":
    main()
