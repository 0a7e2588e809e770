"""``trainer.compile`` settings against the eager fit, as Lightning trains them, alternating fits in one process.

    cd benchmarks && OMP_NUM_THREADS=1 python compile_fit_ab.py --rounds 5 --epochs 2
    cd benchmarks && OMP_NUM_THREADS=1 python compile_fit_ab.py --variants 'eager:' 'compiled:trainer.compile=true' \
        'cppw:trainer.compile={options: {cpp_wrapper: true}}'

The census plain MMoE that ``rechub_compare.py`` trains (8 experts × [64], towers [32], batch 1024,
bf16-mixed unless ``--precision``), fitted by the package's trainer (``make_trainer`` +
:class:`TableDataModule`), every fit a deep copy of the same initial module given its variant's
trainer settings. Variants (``LABEL:KEY=VALUE;KEY=VALUE``, pipeline overrides) take turns within
every round; the first is every ratio's baseline. A compiled variant compiles in its first fit; the
later rounds find its graphs in this process's caches, and the first epoch of every fit is left out
anyway. Prints training-batch rows per process-CPU second (:class:`TrainClock`, epochs after the
first: validation and start-up excluded) per round, and each variant / the first, per round and the
median. Complements ``compile_step_ab.py`` (the step without Lightning) and ``rechub_compare.py``
(fresh processes, against torch-rechub).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rechub_compare import PIPELINE, PLAIN  # noqa: E402 the plain MMoE both sides train
from train_clock import TrainClock  # noqa: E402

from recsys_mtl.spec import load_pipeline  # noqa: E402
from recsys_mtl.train.datamodule import TableDataModule  # noqa: E402
from recsys_mtl.train.fit import build_module, make_trainer, prepare  # noqa: E402

DEFAULT_VARIANTS = [
    "eager:", "compiled:trainer.compile=true", "compiled-cppw:trainer.compile={options: {cpp_wrapper: true}}",
    "compiled-cppw-bmm:trainer.compile={options: {cpp_wrapper: true, max_autotune: true, "
    "max_autotune_gemm_backends: 'CPP,ATEN'}}",
]


def main(default_variants: list[str] = DEFAULT_VARIANTS, description: str = __doc__.splitlines()[0]) -> None:
    """Parse the command line and run it (``steps_per_execution_ab.py`` runs it with its own variants)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--precision", default="bf16-mixed")
    ap.add_argument("--variants", nargs="*", default=default_variants, metavar="LABEL:KEY=VALUE;KEY=VALUE")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    # every fit compiles the same code objects again (a fresh module copy): room for all of them
    torch._dynamo.config.recompile_limit = 256
    torch._dynamo.config.accumulated_recompile_limit = 1024
    variants: dict[str, list[str]] = {}
    for spec in args.variants:
        label, _, sets = spec.partition(":")
        variants[label] = [s for s in sets.split(";") if s]
    with tempfile.TemporaryDirectory() as tmp:
        common = [*PLAIN, f"runs_dir={tmp}", "trainer.progress_bar=false", f"trainer.max_epochs={args.epochs}",
                  f"trainer.precision={args.precision}", "trainer.patience=100"]
        cfg, spec = load_pipeline(PIPELINE, common)
        t = cfg.trainer
        prep = prepare(cfg, spec)
        module = build_module(prep)
        cfgs = {v: load_pipeline(PIPELINE, [*common, *sets])[0] for v, sets in variants.items()}
        # every fit (module copy) compiles the same code once more: room for all, never a fallback to eager
        trainers = {v: c.trainer if c.trainer.compile is None else
                    c.trainer.model_copy(update={"compile": c.trainer.compile.model_copy(update={"recompile_limit": 256})})
                    for v, c in cfgs.items()}
        rates: dict[str, list[float]] = {v: [] for v in variants}
        # copies made before any fit (a fitted module holds graph tensors deepcopy refuses)
        copies = {(r, v): copy.deepcopy(module) for r in range(args.rounds) for v in variants}
        for r in range(args.rounds):
            for v in variants:
                clock = TrainClock()
                m = copies[r, v]
                m.cfg = trainers[v]  # the variant's trainer settings (compile), same initial weights
                trainer, _, _ = make_trainer(cfgs[v], Path(tmp) / f"run{r}{v}", [clock])
                trainer.fit(m, datamodule=TableDataModule(prep.train, prep.valid, None, t.batch_size, t.eval_batch_size, t.seed))
                rows_per_epoch = clock.rows / len(clock.cpu)
                later = clock.cpu[1:] or clock.cpu
                rates[v].append(rows_per_epoch * len(later) / sum(later))
                print(json.dumps({"round": r, "variant": v, "steady_rows_per_cpu_sec": round(rates[v][-1]),
                                  "step_ms": round(1024 / rates[v][-1] * 1000, 3), "first_epoch_cpu_s": round(clock.cpu[0], 2),
                                  "load": [round(x, 2) for x in os.getloadavg()]}), flush=True)
    base = next(iter(variants))
    summary: dict[str, Any] = {"precision": args.precision, "rounds": args.rounds, "epochs": args.epochs,
                               "threads": torch.get_num_threads(), "variants": variants}
    for v in list(variants)[1:]:
        per = [a / b for a, b in zip(rates[v], rates[base])]
        summary[f"{v}/{base}"] = {"per_round": [round(x, 3) for x in per], "median": round(statistics.median(per), 3)}
    summary["median_rows_per_cpu_sec"] = {v: round(statistics.median(x)) for v, x in rates.items()}
    summary["load_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(summary))
    if args.out:
        args.out.write_text(json.dumps({"summary": summary, "rates": rates}, indent=1) + "\n")


if __name__ == "__main__":
    main()
