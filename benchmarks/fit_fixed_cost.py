"""CPU seconds of one short fit (:func:`recsys_mtl.train.fit.fit`) and where they go.

    OMP_NUM_THREADS=1 python benchmarks/fit_fixed_cost.py --repeats 5 --out fit_cost.json
    OMP_NUM_THREADS=1 python benchmarks/fit_fixed_cost.py --set trainer.plots=false --out fit_cost_noplots.json

The fit is ``pipelines/synthetic_mmoe.yaml`` at the size of the tests' short fits (800 rows,
2 epochs, batches of 128: 5 training steps per epoch), each into a new folder with its own data
cache (so the synthetic data is generated each time, as in a test). After one warm-up fit (imports,
first-call costs), ``--repeats`` fits run in this process; the median is reported. The run
pays what a test or an Optuna trial pays per fit: a fixed cost, the training steps are a small part.

CPU = user + system seconds of this process (``resource.RUSAGE_SELF``), which the load of other
processes barely changes; wall is printed too, with the load. ``--parts`` wraps the stages of a fit
(data, model, Trainer, the three loops, each picture) and reports each one's CPU per fit; the stages
overlap where one calls another (``Trainer.validate`` includes the diagnostics picture). The CPU
of Python's cyclic garbage collections during the fits, and how many were full (generation 2),
is reported apart: a full collection walks every object of the process, and the mean over the
repeats shows it where the median does not.

Run it from another checkout (``PYTHONPATH=<checkout>``) for a before/after comparison: only
names both versions have are wrapped.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import gc
import importlib
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]

#: (module, attribute) of the stages ``--parts`` times; an attribute missing in the checkout is skipped
PARTS: list[tuple[str, str]] = [
    ("recsys_mtl.train.fit", "check_pipeline"),
    ("recsys_mtl.train.fit", "prepare"),
    ("recsys_mtl.train.fit", "build_module"),
    ("recsys_mtl.train.fit", "make_trainer"),
    ("lightning.pytorch.trainer.trainer", "Trainer.fit"),
    ("lightning.pytorch.trainer.trainer", "Trainer.validate"),
    ("lightning.pytorch.trainer.trainer", "Trainer.test"),
    ("recsys_mtl.train.module", "MultiTaskModule.training_step"),
    ("lightning.pytorch.callbacks.model_checkpoint", "ModelCheckpoint._save_checkpoint"),
    ("torch", "load"),
    ("recsys_mtl.train.fit", "calibration_report"),
    ("recsys_mtl.train.fit", "write_calibration"),
    ("recsys_mtl.train.calibration_plot", "plot_reliability"),
    ("recsys_mtl.train.fit", "plot_curves"),
    ("recsys_mtl.diagnostics.callback", "ExpertDiagnostics._plot"),
]


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def wrap_parts(totals: dict[str, float]) -> list[str]:
    """Add each PARTS stage's CPU to ``totals`` on every call; returns the stages wrapped."""
    done = []
    for module_name, attr in PARTS:
        owner: Any = importlib.import_module(module_name)
        *path, name = attr.split(".")
        for part in path:
            owner = getattr(owner, part)
        real = getattr(owner, name, None)
        if real is None:
            continue

        def timed(*args: Any, _real: Callable[..., Any] = real, _label: str = attr, **kwargs: Any) -> Any:
            start = cpu_seconds()
            try:
                return _real(*args, **kwargs)
            finally:
                totals[_label] += cpu_seconds() - start

        setattr(owner, name, functools.wraps(real)(timed))
        done.append(attr)
    return done


class GCClock:
    """CPU seconds spent in cyclic garbage collections, and the number of full ones, while installed."""

    def __init__(self) -> None:
        self.seconds, self.full, self._start = 0.0, 0, 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = cpu_seconds()
        else:
            self.seconds += cpu_seconds() - self._start
            self.full += info["generation"] == 2


def one_fit(overrides: list[str]) -> tuple[float, float]:
    """(CPU s, wall s) of one fit into a fresh folder."""
    from recsys_mtl.spec import load_pipeline
    from recsys_mtl.train import fit as fit_module  # looked up per call: --parts may have wrapped it

    with tempfile.TemporaryDirectory() as tmp:
        cfg, spec = load_pipeline(ROOT / "pipelines" / "synthetic_mmoe.yaml", [
            f"data.cache_dir={tmp}/cache", f"runs_dir={tmp}/runs", *overrides])
        cpu, wall = cpu_seconds(), time.perf_counter()
        fit_module.fit(cfg, spec)
        return cpu_seconds() - cpu, time.perf_counter() - wall


def checkout() -> Path:
    """The checkout whose ``recsys_mtl`` this process imported (``PYTHONPATH`` may point elsewhere)."""
    import recsys_mtl

    return Path(recsys_mtl.__file__).resolve().parents[1]


def commit(folder: Path) -> str:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=folder, capture_output=True, text=True, check=True)
        return done.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=800)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--set", action="append", default=[], help="more pipeline overrides (dotted=value)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--parts", action="store_true", help="also the CPU per stage of a fit")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)  # Lightning's banner lines
    overrides = [f"data.rows={args.rows}", f"trainer.max_epochs={args.epochs}", f"trainer.batch_size={args.batch_size}",
                 "trainer.patience=5", "trainer.progress_bar=false", "trainer.log_every_n_steps=2", *args.set]

    cold_cpu, cold_wall = one_fit(overrides)
    totals: dict[str, float] = defaultdict(float)
    wrapped = wrap_parts(totals) if args.parts else []
    clock = GCClock()
    gc.callbacks.append(clock)
    cpu, wall = zip(*(one_fit(overrides) for _ in range(args.repeats)))
    gc.callbacks.remove(clock)
    parts = {k: round(totals[k] / args.repeats, 4) for k in wrapped}
    result = {
        "benchmark": "fit_fixed_cost", "overrides": overrides, "repeats": args.repeats,
        "cold_cpu_s": round(cold_cpu, 3), "cold_wall_s": round(cold_wall, 3),
        "median_cpu_s": round(statistics.median(cpu), 3), "mean_cpu_s": round(statistics.mean(cpu), 3),
        "median_wall_s": round(statistics.median(wall), 3),
        "gc_cpu_s_per_fit": round(clock.seconds / args.repeats, 4), "full_collections": clock.full,
        "cpu_s": [round(c, 3) for c in cpu], "parts_cpu_s": parts,
        "load": os.getloadavg()[0], "omp_threads": os.environ.get("OMP_NUM_THREADS"),
        "checkout": str(checkout()), "commit": commit(checkout()),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    print(f"fit {' '.join(args.set) or '(defaults)'}: median {result['median_cpu_s']:.3f} CPU s, mean {result['mean_cpu_s']:.3f} "
          f"({result['median_wall_s']:.3f} wall s) over {args.repeats}; GC {result['gc_cpu_s_per_fit'] * 1000:.0f} ms per fit, "
          f"{clock.full} full collections; cold {cold_cpu:.2f} CPU s, load {result['load']:.2f}")
    for name, value in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"  {value * 1000:7.1f} ms  {name}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
