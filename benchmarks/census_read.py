"""The census read with and without the decoded cache, each in a fresh process (what a ``fit`` pays).

    python benchmarks/census_read.py --data ../shared/data/census-income-kdd --rounds 3

Each round runs, in order and each in its own interpreter: a read without a cache (``cache_dir:
null``), a read into an empty cache folder (decode, then write the Parquet copies), and a read of
that warm cache. Printed: the median wall and process-CPU seconds of ``read_census`` alone (train
``.bz2`` + test ``.gz``, shuffled and halved), the read's start-up excluded, and the copies' size.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: one read in a fresh interpreter; prints {"wall": s, "cpu": s, "rows": n}
CHILD = """
import json, sys, time
from pathlib import Path
from recsys_mtl.data.census import read_census
cache = None if sys.argv[2] == "none" else Path(sys.argv[2])
t, c = time.perf_counter(), time.process_time()
train, valid, test = read_census(Path(sys.argv[1]), 2018, cache_dir=cache)
print(json.dumps({"wall": time.perf_counter() - t, "cpu": time.process_time() - c, "rows": train.height + valid.height + test.height}))
"""


def read_once(data: Path, cache: Path | None) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", CHILD, str(data), str(cache) if cache else "none"],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="the census-income-kdd folder")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    cache = Path(tempfile.mkdtemp(prefix="census_read_"))
    runs: dict[str, list[dict[str, float]]] = {"no cache": [], "cold cache (decode + write)": [], "warm cache": []}
    try:
        for _ in range(args.rounds):
            runs["no cache"].append(read_once(args.data, None))
            shutil.rmtree(cache, ignore_errors=True)
            runs["cold cache (decode + write)"].append(read_once(args.data, cache))
            runs["warm cache"].append(read_once(args.data, cache))
        size = sum(f.stat().st_size for f in cache.glob("*.parquet")) / 1e6
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    rows = {r["rows"] for rs in runs.values() for r in rs}
    assert len(rows) == 1, rows  # every variant read the same rows
    print(f"census read (train + test, {rows.pop():,} rows), median of {args.rounds} rounds; Parquet copies {size:.1f} MB")
    print("| read | wall s | CPU s |")
    print("|---|---|---|")
    for name, rs in runs.items():
        print(f"| {name} | {statistics.median(r['wall'] for r in rs):.2f} | {statistics.median(r['cpu'] for r in rs):.2f} |")


if __name__ == "__main__":
    main()
