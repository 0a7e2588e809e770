"""Streaming a Parquet dataset larger than memory: write it, fit preprocessing, read, train.

    python benchmarks/streaming.py --rows 10000000 --files 20 --distinct-files 4 --out /tmp/recsys_stream

1. Writes ``--files`` Parquet files of synthetic data (row groups of 65,536 rows) unless present:
   ``--distinct-files`` generator draws (seed = file index), the rest byte copies of those. The
   files are a mixture of task functions with repeats: this benchmark measures throughput and
   memory, not accuracy (streaming accuracy is covered by tests/data/test_streaming.py).
2. In a fresh subprocess (so its peak RSS is its own, read from ``VmHWM``): the streaming fit
   (polars streaming engine), one pass of the loader alone (read + encode + shuffle + batch),
   and one training epoch of the ``parquet_stream`` pipeline (MMoE of pipelines/synthetic_mmoe.yaml).
Prints one JSON line per phase: seconds, rows/s, peak RSS so far (MiB).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def vm_hwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_dataset(out: Path, rows: int, files: int, distinct: int) -> None:
    """``files`` files of ``rows // files`` rows; the first ``distinct`` are generated, the rest
    are byte copies of them (the generator's Python list of tags costs ~3 µs a row on a loaded
    machine; copies keep the write step to minutes and change nothing that is measured)."""
    from recsys_mtl.data.synthetic import SyntheticConfig, generate

    (out / "train").mkdir(parents=True, exist_ok=True)
    per = rows // files
    t0 = time.perf_counter()
    for i in range(files):
        path = out / "train" / f"part-{i:04d}.parquet"
        if path.exists():
            continue
        tmp = path.with_suffix(".tmp")
        if i < distinct:
            generate(SyntheticConfig(rows=per, seed=i)).write_parquet(tmp, row_group_size=65_536)
        else:
            shutil.copyfile(out / "train" / f"part-{i % distinct:04d}.parquet", tmp)
        tmp.replace(path)
        print(json.dumps({"written": path.name, "rows": per, "elapsed_s": round(time.perf_counter() - t0, 1)}), flush=True)
    for split, seed in (("valid", 10_001), ("test", 10_002)):
        path = out / f"{split}.parquet"
        if not path.exists():
            generate(SyntheticConfig(rows=50_000, seed=seed)).write_parquet(path)


def measure(out: Path, batch_size: int, threads: int, workers: int, train: bool, train_batches: int | None = None) -> None:
    import torch
    import yaml

    from recsys_mtl.data.streaming import ParquetStream, StreamLoader, parquet_files
    from recsys_mtl.data.preprocess import Preprocessor
    from recsys_mtl.spec import load_pipeline, load_spec
    from recsys_mtl.train.fit import fit

    torch.set_num_threads(threads)
    spec = load_spec(ROOT / "feature_specs" / "synthetic.yaml")
    files = parquet_files(out / "train")

    def report(phase: str, seconds: float, rows: int | None = None, **extra: Any) -> None:
        rec = {"phase": phase, "seconds": round(seconds, 1), "peak_rss_mib": round(vm_hwm_mib(), 1), **extra}
        if rows is not None:
            rec.update(rows=rows, rows_per_sec=round(rows / seconds))
        print(json.dumps(rec), flush=True)

    t0 = time.perf_counter()
    pre = Preprocessor.fit_files(spec, files)
    report("streaming_fit", time.perf_counter() - t0)

    stream = ParquetStream(files, pre, batch_size, seed=0)
    t0, rows = time.perf_counter(), 0
    for batch in StreamLoader(stream, num_workers=workers):
        rows += batch["labels"].shape[0]
    report("loader_only", time.perf_counter() - t0, rows, workers=workers)

    if not train:
        return
    base = yaml.safe_load((ROOT / "pipelines" / "synthetic_mmoe.yaml").read_text())
    base["spec"] = str(ROOT / "feature_specs" / "synthetic.yaml")
    base["data"] = {"kind": "parquet_stream", "train": str(out / "train"), "valid": str(out / "valid.parquet"),
                    "test": str(out / "test.parquet"), "num_workers": workers}
    base["trainer"].update(max_epochs=1, batch_size=batch_size, progress_bar=False, limit_train_batches=train_batches)
    with tempfile.TemporaryDirectory() as tmp:
        base["runs_dir"] = tmp
        (Path(tmp) / "p.yaml").write_text(yaml.safe_dump(base))
        cfg, spec = load_pipeline(Path(tmp) / "p.yaml")
        t0 = time.perf_counter()
        m = fit(cfg, spec).metrics
    report("train_epoch", time.perf_counter() - t0, None, train_rows=m["train_rows"],
           train_rows_per_sec=m["train_rows_per_sec"], workers=workers, batch_size=batch_size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--distinct-files", type=int, default=4, help="generated files; the others are copies")
    ap.add_argument("--out", type=Path, default=Path("/tmp/recsys_stream"))
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--no-train", action="store_true", help="stop after the loader pass")
    ap.add_argument("--train-batches", type=int, default=None, help="train on this many batches of the epoch (default all)")
    ap.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        measure(args.out, args.batch_size, args.threads, args.workers, not args.no_train, args.train_batches)
        return
    write_dataset(args.out, args.rows, args.files, args.distinct_files)
    cmd = [sys.executable, __file__, "--measure", "--out", str(args.out), "--batch-size", str(args.batch_size),
           "--threads", str(args.threads), "--workers", str(args.workers)] + (["--no-train"] if args.no_train else [])
    cmd += ["--train-batches", str(args.train_batches)] if args.train_batches else []
    sys.exit(subprocess.run(cmd).returncode)


if __name__ == "__main__":
    main()
