"""What the streaming loader's DataLoader workers cost to start: spawned (the old way) or forked from
multiprocessing's fork server (:func:`recsys_mtl.data.streaming.worker_context`).

    python benchmarks/stream_workers_cost.py --epochs 3 --workers 2 --rounds 2 --json /tmp/stream_workers.json

Each variant runs in a fresh subprocess (alternating, ``--rounds`` times): a small Parquet dataset
(2,400 rows in 12 row groups), then ``--epochs`` passes of a :class:`StreamLoader` with ``--workers``
workers (the workers are not persistent: every epoch starts new ones). Measured there: the
workers' CPU (spawned workers are this process's children; forked ones are the fork server's, so
the server's own CPU and its reaped children's, read from /proc before the process exits, are
counted instead) and the wall time of the epochs. The main process's own CPU is left out (the
same in both). Prints one JSON line per run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("spawn", "forkserver")


def _proc_cpu(pid: int) -> float:
    """utime + stime + cutime + cstime of process ``pid`` (seconds)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def run_one(variant: str, epochs: int, workers: int) -> dict[str, Any]:
    """In the child process: the loader's epochs with workers started the ``variant`` way."""
    import multiprocessing.forkserver as forkserver

    import polars as pl

    from recsys_mtl.data import streaming
    from recsys_mtl.data.preprocess import Preprocessor
    from recsys_mtl.data.synthetic import SyntheticConfig, generate
    from recsys_mtl.spec import FeatureSpec
    from tests.support.synthetic import synthetic_spec

    folder = Path(tempfile.mkdtemp(prefix="stream-workers-"))
    df = generate(SyntheticConfig(rows=2400, seed=0))
    for i in range(3):
        df.slice(i * 800, 800).write_parquet(folder / f"part-{i}.parquet", row_group_size=200)
    spec: FeatureSpec = synthetic_spec(2)
    pre = Preprocessor.fit(spec, pl.concat([pl.read_parquet(f) for f in sorted(folder.glob("*.parquet"))]))
    if variant == "spawn":  # the code before: a fresh interpreter per worker per epoch
        streaming.worker_context = lambda: multiprocessing.get_context("spawn")  # type: ignore[assignment]
    stream = streaming.ParquetStream(streaming.parquet_files(folder), pre, batch_size=64, buffer_rows=500, seed=3,
                                     num_workers=workers)
    loader = streaming.StreamLoader(stream, num_workers=workers, equal_steps=False)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    batches = sum(1 for _ in range(epochs) for _ in loader)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - kids.ru_utime - kids.ru_stime
    server = getattr(forkserver._forkserver, "_forkserver_pid", None)
    server_cpu = _proc_cpu(server) if server else 0.0
    return {"variant": variant, "epochs": epochs, "workers": workers, "batches": batches,
            "workers_cpu_s": round(cpu + server_cpu, 3), "wall_s": round(wall, 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--json", type=Path, default=None, help="write every run here")
    p.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, args.epochs, args.workers)))
        return
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    runs = []
    for round_ in range(args.rounds):
        for variant in VARIANTS:
            out = subprocess.run([sys.executable, __file__, "--child", variant, "--epochs", str(args.epochs),
                                  "--workers", str(args.workers)], capture_output=True, text=True, env=env, check=True)
            row = {**json.loads(out.stdout.strip().splitlines()[-1]), "round": round_ + 1,
                   "load_1min": os.getloadavg()[0]}
            print(json.dumps(row), flush=True)
            runs.append(row)
    if args.json:
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                                         "runs": runs}, indent=1) + "\n")


if __name__ == "__main__":
    main()
