"""What ``trainer.compile`` spends its first epoch on: the census plain MMoE of rechub_compare.py,
one compiled epoch in this process, then dynamo's per-phase times, graph and recompile counts,
graph breaks and the persistent caches' hits and misses.

    TORCHINDUCTOR_CACHE_DIR=/tmp/ind-a OMP_NUM_THREADS=1 python benchmarks/compile_profile.py   # cold
    TORCHINDUCTOR_CACHE_DIR=/tmp/ind-a OMP_NUM_THREADS=1 python benchmarks/compile_profile.py   # warm: same cache
    ... --set trainer.precision=bf16-mixed --cprofile /tmp/compile.prof

A cold run (empty ``TORCHINDUCTOR_CACHE_DIR``) pays dynamo's trace, AOTAutograd's joint graph and
partition, inductor's lowering and Python/C++ code generation and the C++ compiler; a warm run (the
same model compiled before, in another process) still traces with dynamo and looks the graphs up in
inductor's FX graph cache and the AOTAutograd cache (both keyed on the traced graph, input shapes and
strides, the torch version and the inductor config), skipping code generation and the C++ compiler.

Timing: ``first_steps`` are the wall seconds of each of the first training steps (step 0 compiles
the full-batch graph, the epoch's last, smaller batch the dynamic one); ``epoch_seconds`` the
whole epoch (batches only); ``compile_times`` dynamo's own accounting (seconds summed over calls).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rechub_compare import PIPELINE, PLAIN  # noqa: E402 the plain MMoE both sides train

#: dynamo / inductor counters worth reporting (name in ``torch._dynamo.utils.counters``)
COUNTERS = {
    "stats": ("unique_graphs", "calls_captured"),
    "inductor": ("fxgraph_cache_hit", "fxgraph_cache_miss", "fxgraph_cache_bypass"),
    "aot_autograd": ("autograd_cache_hit", "autograd_cache_miss", "autograd_cache_bypass", "total"),
}


class StepClock(L.Callback):
    """Wall seconds of every training step of the first epoch (batch fetch excluded)."""

    def __init__(self) -> None:
        self.steps: list[tuple[int, float]] = []  # (rows, seconds)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self._t = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.steps.append((int(batch["labels"].shape[0]), time.perf_counter() - self._t))


class OpProfile(L.Callback):
    """torch.profiler over training steps ``[start, start + steps)`` (compiled by then): where a
    steady step's time goes (compiled kernels, optimizer, Lightning)."""

    def __init__(self, start: int = 60, steps: int = 40) -> None:
        import torch.profiler as tp

        self.start, self.stop = start, start + steps
        self.prof = tp.profile(activities=[tp.ProfilerActivity.CPU])

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if batch_idx == self.start:
            self.prof.__enter__()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if batch_idx == self.stop - 1:
            self.prof.__exit__(None, None, None)

    def table(self) -> str:
        return str(self.prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="pipeline override (ours)")
    ap.add_argument("--cprofile", type=Path, help="write a cProfile of the fit here")
    ap.add_argument("--explain", action="store_true", help="also run torch._dynamo.explain on one batch (graph breaks)")
    ap.add_argument("--json", type=Path, help="also write the result here")
    ap.add_argument("--ops", action="store_true", help="also print torch.profiler's op table of 40 steady steps")
    args = ap.parse_args()

    import torch
    import torch._dynamo.utils as dutils

    from recsys_mtl.data.tensors import features_only
    from recsys_mtl.spec import load_pipeline
    from recsys_mtl.train.datamodule import TableDataModule
    from recsys_mtl.train.fit import build_module, make_trainer, prepare

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [*PLAIN, "trainer.max_epochs=1", "trainer.compile=true", *args.set, f"runs_dir={tmp}",
                     "trainer.progress_bar=false"]
        cfg, spec = load_pipeline(PIPELINE, overrides)
        prep = prepare(cfg, spec)
        module = build_module(prep)
        t = cfg.trainer
        dm = TableDataModule(prep.train, prep.valid, prep.test, t.batch_size, t.eval_batch_size, t.seed)
        clock = StepClock()
        ops = OpProfile() if args.ops else None
        trainer, _, _ = make_trainer(cfg, Path(tmp), [clock, *([ops] if ops else [])])
        dutils.counters.clear()
        prof = cProfile.Profile() if args.cprofile else None
        started = time.perf_counter()
        if prof:
            prof.enable()
        trainer.fit(module, datamodule=dm)
        if prof:
            prof.disable()
            prof.dump_stats(args.cprofile)
        fit_seconds = time.perf_counter() - started
        steps = clock.steps
        explained = None
        if args.explain:
            batch = next(iter(dm.train_dataloader()))
            module.model.train()
            ex = torch._dynamo.explain(module.model)(features_only(batch))
            explained = {"graphs": ex.graph_count, "graph_breaks": ex.graph_break_count,
                         "break_reasons": [str(b.reason)[:300] for b in ex.break_reasons]}
    steady = sorted(s for _, s in steps[2:-1])
    median = steady[len(steady) // 2]
    out = {
        "cache_dir": os.environ.get("TORCHINDUCTOR_CACHE_DIR", "(default)"),
        "threads": args.threads,
        "overrides": args.set,
        "fit_seconds": round(fit_seconds, 2),
        "epoch_seconds": round(sum(s for _, s in steps), 2),
        "first_steps": [round(s, 3) for _, s in steps[:3]],
        "last_step": {"rows": steps[-1][0], "seconds": round(steps[-1][1], 3)},
        "median_step_seconds": round(median, 4),
        "compile_overhead_seconds": round(sum(s - median for _, s in steps if s > 3 * median), 2),
        "compile_times": _phase_times(),
        "counters": {group: {k: dutils.counters[group][k] for k in keys if k in dutils.counters[group]}
                     for group, keys in COUNTERS.items()},
        "graph_breaks": dict(dutils.counters["graph_break"]),
        "recompiles": dict(dutils.counters["recompiles"]) if "recompiles" in dutils.counters else {},
        "explain": explained,
    }
    text = json.dumps(out, indent=1)
    print(text)
    if ops:
        print(ops.table())
    if args.json:
        args.json.write_text(text)


def _phase_times() -> dict[str, float]:
    """Dynamo's compile-time accounting: seconds per timed phase, summed over its calls."""
    import torch._dynamo.utils as dutils

    names, values = dutils.compile_times(repr="csv", aggregate=True)
    return {n: round(float(v), 3) for n, v in zip(names, values)}


if __name__ == "__main__":
    main()
