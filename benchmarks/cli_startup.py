"""Start-up cost of CLI commands: median wall and CPU seconds of ``python -m recsys_mtl ...``
(and of ``python -c "import M"`` for the modules that a command's handler imports).

    python benchmarks/cli_startup.py --tree before=/tmp/old_checkout --tree after=. --runs 5

Each tree's code is put first on PYTHONPATH; the trees alternate run by run so that load drifts
hit both alike. CPU = user + system of the child (``resource.RUSAGE_CHILDREN`` deltas), which the
load of other processes barely changes; wall does change with load (printed next to the numbers).
Writes JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: name -> interpreter arguments
COMMANDS: dict[str, list[str]] = {
    "--help": ["-m", "recsys_mtl", "--help"],
    "list": ["-m", "recsys_mtl", "list"],
    "validate": ["-m", "recsys_mtl", "validate", "pipelines/synthetic_mmoe_tune.yaml"],
    "export --help": ["-m", "recsys_mtl", "export", "--help"],
    "score --help": ["-m", "recsys_mtl", "score", "--help"],
    # what `export`, `report` and `split` import before they start working
    "import export": ["-c", "import recsys_mtl.export"],
    "import report": ["-c", "import recsys_mtl.diagnostics_report"],
    "import split": ["-c", "import recsys_mtl.evaluate.split"],
}


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def one_run(tree: Path, argv: list[str]) -> tuple[float, float]:
    """(wall s, CPU s) of one ``python argv`` with ``tree`` first on PYTHONPATH."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cpu0, t0 = children_cpu(), time.perf_counter()
    subprocess.run([sys.executable, *argv], cwd=tree, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0, children_cpu() - cpu0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", action="append", required=True, help="NAME=PATH of a checkout (repeatable)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--command", action="append", choices=sorted(COMMANDS), help="default: all")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    trees = {name: Path(path).resolve() for name, path in (t.split("=", 1) for t in args.tree)}
    results: list[dict[str, Any]] = []
    for cmd in args.command or list(COMMANDS):
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
        for _ in range(args.runs):
            for name, tree in trees.items():
                samples[name].append(one_run(tree, COMMANDS[cmd]))
        for name, runs in samples.items():
            row = {"command": cmd, "tree": name, "runs": len(runs),
                   "wall_s": round(statistics.median(w for w, _ in runs), 3),
                   "cpu_s": round(statistics.median(c for _, c in runs), 3),
                   "load": os.getloadavg()[0]}
            results.append(row)
            print(f"{cmd:<14} {name:<8} wall {row['wall_s']:6.2f} s  cpu {row['cpu_s']:6.2f} s  (load {row['load']:.2f})")
    if args.out:
        args.out.write_text(json.dumps({"argv": sys.argv, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
