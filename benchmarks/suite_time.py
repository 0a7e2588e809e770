"""How long the test suite takes: the quick tier (``-m "not slow"``) and the full suite, from a clean clone.

    OMP_NUM_THREADS=1 python benchmarks/suite_time.py --tier fast --tier full --json /tmp/suite.json
    python benchmarks/suite_time.py --tier fast --here      # this working tree instead of a clone of HEAD

Each tier runs ``python -m pytest -q -n <workers> tests`` once, in a fresh ``git clone`` of HEAD
(no ``__pycache__``, no pytest cache: what CI sees), with benchmarks/suite_cpu_plugin.py recording
every test's CPU and wall seconds. Printed and written per tier: wall time, the CPU time of pytest
and everything it waited for, the machine's load average before and after, the test count, and
the tests that cost most CPU. Wall time depends on the load of other processes; the CPU sums do
much less, so compare CPU between runs on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TIERS: dict[str, list[str]] = {"fast": ["-m", "not slow"], "full": []}


def load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def children_cpu() -> float:
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return kids.ru_utime + kids.ru_stime


def run_tier(tree: Path, tier: str, workers: int, top: int, raw: Path | None = None) -> dict[str, Any]:
    """One pytest run of ``tier`` in ``tree``: totals and the ``top`` tests by CPU seconds; with ``raw``,
    every test's record (worker, start, CPU, wall) is also written to ``raw/<tier>.jsonl``."""
    with tempfile.TemporaryDirectory(prefix="suite-cpu-") as folder:
        env = {**os.environ, "SUITE_CPU_DIR": folder, "PYTHONPATH": str(tree),
               # a clone's tests would look for the shared data next to the clone
               "RECSYS_MTL_SHARED_DATA": os.environ.get("RECSYS_MTL_SHARED_DATA", str(ROOT.parent / "shared" / "data"))}
        cmd = [sys.executable, "-m", "pytest", "-q", "-n", str(workers), "tests", "-p", "benchmarks.suite_cpu_plugin",
               "-p", "no:cacheprovider", *TIERS[tier]]
        before, cpu0, t0 = load(), children_cpu(), time.perf_counter()
        proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
        wall, cpu, after = time.perf_counter() - t0, children_cpu() - cpu0, load()
        tests = [{**json.loads(line), "worker": f.stem.removeprefix("cpu_")}
                 for f in sorted(Path(folder).glob("cpu_*.jsonl")) for line in f.read_text().splitlines()]
    if raw is not None:
        raw.mkdir(parents=True, exist_ok=True)
        (raw / f"{tier}.jsonl").write_text("".join(json.dumps(t) + "\n" for t in tests))
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-500:]
    # -ra's short summary: which tests failed or errored, and why (a timing run must not hide a flake)
    failed = [line for line in proc.stdout.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    tests.sort(key=lambda t: -t["cpu"])
    return {
        "tier": tier, "command": " ".join(["python", *cmd[1:]]), "returncode": proc.returncode, "summary": summary, "failed": failed,
        "tests": len(tests), "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
        "test_cpu_sum_s": round(sum(t["cpu"] for t in tests), 1), "test_wall_sum_s": round(sum(t["wall"] for t in tests), 1),
        "load_before": before, "load_after": after,
        "top": [{"id": t["id"], "cpu_s": round(t["cpu"], 2), "wall_s": round(t["wall"], 2)} for t in tests[:top]],
    }


#: what .ci/run byte-compiles after the install (an editable install compiles nothing, and with
#: PYTHONDONTWRITEBYTECODE set every process would compile the package again)
COMPILED = ["recsys_mtl", "serving", "tests"]


def clone_head(into: Path) -> Path:
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(into)], check=True)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tier", action="append", choices=sorted(TIERS), help="fast (-m 'not slow') or full; repeatable")
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist workers (-n)")
    parser.add_argument("--top", type=int, default=20, help="how many of the costliest tests to list")
    parser.add_argument("--here", action="store_true", help="run in this working tree, not a clone of HEAD")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--compile", action="store_true",
                        help="byte-compile the clone's packages first, as .ci/run does (this environment sets PYTHONDONTWRITEBYTECODE)")
    parser.add_argument("--raw", type=Path, help="a folder for every test's record per tier (<tier>.jsonl: worker, start, CPU, wall)")
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    results = []
    with tempfile.TemporaryDirectory(prefix="suite-clone-") as tmp:
        tree = ROOT if args.here else clone_head(Path(tmp) / "clone")
        if args.compile:
            subprocess.run([sys.executable, "-m", "compileall", "-q", *COMPILED], cwd=tree, check=True)
        for tier in args.tier or ["fast", "full"]:
            start = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
            r = run_tier(tree, tier, args.workers, args.top, args.raw) | {"commit": commit, "date": f"{start}-{time.strftime('%H:%M', time.gmtime())} UTC"}
            results.append(r)
            print(f"{tier}: {r['tests']} tests, wall {r['wall_s']} s, CPU {r['cpu_s']} s (sum over tests {r['test_cpu_sum_s']} s), "
                  f"load {r['load_before']} -> {r['load_after']}, rc {r['returncode']}: {r['summary']}")
            for line in r["failed"]:
                print(f"  {line}", flush=True)
            for t in r["top"]:
                print(f"  {t['cpu_s']:7.2f} s CPU {t['wall_s']:7.2f} s wall  {t['id']}", flush=True)
            if args.json:  # after every tier, so a long full run does not hold back the quick tier's numbers
                args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
