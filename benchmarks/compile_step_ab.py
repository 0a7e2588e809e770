"""Compiled training steps of the census plain MMoE under inductor's options and compile scopes, in one
process, against the eager step: which option pays at one thread.

    cd benchmarks && OMP_NUM_THREADS=1 python compile_step_ab.py --rounds 5 --steps 40
    cd benchmarks && OMP_NUM_THREADS=1 python compile_step_ab.py --variants eager,default,cpp_wrapper --rounds 5
    cd benchmarks && OMP_NUM_THREADS=1 python compile_step_ab.py --profile default    # op table of one variant

The model is the one rechub_compare.py trains (:data:`rechub_compare.PLAIN`, 8 experts × [64],
towers [32], batch 1024) in bf16-mixed as Lightning runs it (the forward and the loss under
``torch.autocast(bfloat16)``); the step is the package's: ``MultiTaskModule.step_rows`` +
``weighted_mean``, the losses summed (the ``equal`` balancer), backward, the training optimizer
(:func:`recsys_mtl.train.optim.build_optimizer`, fused AdamW) and ``zero_grad``. Lightning's own
per-step Python is left out: it is the same for every variant (measured in docs/history.md
``h-notes-h49speed``).

Variants (:data:`VARIANTS`, ``--variants``), each a copy of the same initial model and its own
optimizer, stepped on the same batches; blocks of ``--steps`` steps take turns, one per variant and
round. The first block of each compiles it: its wall seconds are reported as ``first_block_s``
(warm or cold depending on ``TORCHINDUCTOR_CACHE_DIR``; later variants in the process reuse the
earlier ones' imports and the ISA probe, so a cold compile is clocked by running one variant per
process with an empty cache). Prints per variant the median over rounds of ms per step (wall and
process CPU) and the median over rounds of step / first variant's step in the same round.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rechub_compare import PIPELINE, PLAIN  # noqa: E402 the plain MMoE both sides train

from recsys_mtl.data.tensors import Batch, features_only  # noqa: E402
from recsys_mtl.spec import load_pipeline  # noqa: E402
from recsys_mtl.train.datamodule import TableDataModule  # noqa: E402
from recsys_mtl.train.fit import build_module, prepare  # noqa: E402
from recsys_mtl.train.losses import weighted_mean  # noqa: E402
from recsys_mtl.train.module import MultiTaskModule  # noqa: E402
from recsys_mtl.train.optim import build_optimizer  # noqa: E402


@dataclass(frozen=True)
class Variant:
    """How one variant runs the step.

    ``compiled``: compile anything at all (False: the eager step). ``scope``: ``model`` compiles the
    model's forward in place (``nn.Module.compile``, what ``trainer.compile`` does); ``model+loss``
    compiles forward + row losses + weighted means + sum as one function. ``kwargs``: torch.compile
    keywords; ``options``: inductor config for this compile only (torch.compile's ``options``).
    ``skip_guards``: run the steps under ``set_stance(skip_guard_eval_unsafe=True)`` (dynamo checks
    no guards when one graph is cached). ``compile_optimizer``: also ``torch.compile`` the
    optimizer's ``step``. ``capture``: keep ``SharedCapture``'s forward hook on the experts (False:
    removed, as a balancer without gradient surgery could do without it; compiled, the hooked output
    is an extra graph output whose gradient AOTAutograd fills with zeros every step)."""

    compiled: bool = True
    scope: str = "model"
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    skip_guards: bool = False
    compile_optimizer: bool = False
    capture: bool = True


#: name → variant (``--variants`` picks and orders them; the first is every ratio's baseline)
VARIANTS: dict[str, Variant] = {
    "eager": Variant(compiled=False),
    "default": Variant(),
    "fullgraph_static": Variant(kwargs={"fullgraph": True, "dynamic": False}),
    "cpp_wrapper": Variant(options={"cpp_wrapper": True}),
    "max_autotune": Variant(kwargs={"mode": "max-autotune-no-cudagraphs"}),
    "max_autotune_cpp": Variant(options={"max_autotune": True, "max_autotune_gemm_backends": "CPP,ATEN"}),
    "no_weight_prepack": Variant(options={"cpp.weight_prepack": False}),
    "model_loss": Variant(scope="model+loss"),
    "skip_guards": Variant(skip_guards=True),
    "compiled_optimizer": Variant(compile_optimizer=True),
    "model_loss_cpp_wrapper": Variant(scope="model+loss", options={"cpp_wrapper": True}),
    "cpp_wrapper_autotune_cpp": Variant(options={"cpp_wrapper": True, "max_autotune": True, "max_autotune_gemm_backends": "CPP,ATEN"}),
    "eager_no_capture": Variant(compiled=False, capture=False),
    "default_no_capture": Variant(capture=False),
    "all": Variant(scope="model+loss", options={"cpp_wrapper": True, "max_autotune": True, "max_autotune_gemm_backends": "CPP,ATEN"},
                   skip_guards=True),
}


def step_fn(module: MultiTaskModule, v: Variant) -> Callable[[Batch], Tensor]:
    """The forward + loss of one step, (B rows) -> () total, compiled as ``v`` says."""
    model = module.model

    def loss(batch: Batch) -> Tensor:
        logits = model(features_only(batch))
        return weighted_mean(*module.step_rows(logits, batch)).sum()

    if not v.compiled:
        return loss
    if v.scope == "model":
        model.compile(backend="inductor", options=v.options or None, **v.kwargs)
        return loss
    if v.scope == "model+loss":
        return torch.compile(loss, backend="inductor", options=v.options or None, **v.kwargs)
    raise ValueError(f"unknown scope {v.scope!r}")


@contextlib.contextmanager
def stance(v: Variant) -> Iterator[None]:
    if v.skip_guards:
        with torch.compiler.set_stance("default", skip_guard_eval_unsafe=True):
            yield
    else:
        yield


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="eager,default,cpp_wrapper,max_autotune,model_loss,skip_guards,compiled_optimizer")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    ap.add_argument("--precision", default="bf16-mixed", choices=["bf16-mixed", "32-true"])
    ap.add_argument("--profile", metavar="VARIANT", help="instead: torch.profiler op table of --steps warm steps of VARIANT")
    ap.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch._dynamo.config.recompile_limit = 64  # every variant compiles the same code objects
    torch._dynamo.config.accumulated_recompile_limit = 256

    names = [args.profile] if args.profile else args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        sys.exit(f"--variants: unknown {unknown}; choose from {', '.join(VARIANTS)}")
    with tempfile.TemporaryDirectory() as tmp:
        cfg, spec = load_pipeline(PIPELINE, [*PLAIN, f"trainer.precision={args.precision}", f"runs_dir={tmp}"])
        prep = prepare(cfg, spec)
        base = build_module(prep).train()
        t = cfg.trainer
        dm = TableDataModule(prep.train, prep.valid, prep.test, t.batch_size, t.eval_batch_size, t.seed)
        loader = iter(dm.train_dataloader())
        batches = [next(loader) for _ in range(8)]
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if args.precision == "bf16-mixed" else contextlib.nullcontext

    runs: dict[str, tuple[Callable[[Batch], Tensor], torch.optim.Optimizer, Callable[[], object]]] = {}
    for n in names:
        v = VARIANTS[n]
        module = copy.deepcopy(base)
        if not v.capture:
            for m in module.model.modules():
                m._forward_hooks.clear()  # the deep copy kept SharedCapture's hook (writing to base's capture)
        opt = build_optimizer(module.model, torch.nn.Module(), t)
        fn = step_fn(module, v)
        opt_step: Callable[[], object] = torch.compile(opt.step) if v.compile_optimizer else opt.step
        runs[n] = (fn, opt, opt_step)

    def block(n: str, warm: bool = True) -> tuple[float, float]:
        """Wall and process-CPU ms per step over ``--steps`` steps of variant ``n`` (``warm``: compiled
        before, so a variant that skips guards may)."""
        fn, opt, opt_step = runs[n]
        w, c = time.perf_counter(), time.process_time()
        with stance(VARIANTS[n]) if warm else contextlib.nullcontext():
            for s in range(args.steps):
                b = batches[s % len(batches)]
                with autocast():
                    total = fn(b)
                total.backward()
                opt_step()
                opt.zero_grad(set_to_none=True)
        return (time.perf_counter() - w) * 1000 / args.steps, (time.process_time() - c) * 1000 / args.steps

    first: dict[str, float] = {}
    for n in names:
        w = time.perf_counter()
        block(n, warm=False)  # compiles (warm-up for eager)
        first[n] = time.perf_counter() - w
    if args.profile:
        import torch.profiler as tp

        with tp.profile(activities=[tp.ProfilerActivity.CPU], record_shapes=True) as prof:
            block(args.profile)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=60))
        print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=20))
        return
    table: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    for _ in range(args.rounds):
        for n in names:
            table[n].append(block(n))
    load = os.getloadavg()
    rows = []
    for n in names:
        wall = statistics.median(r[0] for r in table[n])
        cpu = statistics.median(r[1] for r in table[n])
        ratio = statistics.median(a[0] / b[0] for a, b in zip(table[n], table[names[0]]))
        cpu_ratio = statistics.median(a[1] / b[1] for a, b in zip(table[n], table[names[0]]))
        rows.append({"variant": n, "step_ms_wall": round(wall, 3), "step_ms_cpu": round(cpu, 3),
                     "min_ms_wall": round(min(r[0] for r in table[n]), 3),  # the least disturbed block (shared machine)
                     f"wall_vs_{names[0]}": round(ratio, 3), f"cpu_vs_{names[0]}": round(cpu_ratio, 3),
                     "per_round_wall": [round(r[0], 2) for r in table[n]], "per_round_cpu": [round(r[1], 2) for r in table[n]],
                     "first_block_s": round(first[n], 2)})
        print(json.dumps(rows[-1]), flush=True)
    meta = {"threads": torch.get_num_threads(), "precision": args.precision, "load": [round(x, 2) for x in load],
            "rounds": args.rounds, "steps": args.steps, "cache": os.environ.get("TORCHINDUCTOR_CACHE_DIR", "(default)"),
            "torch": torch.__version__}
    print(json.dumps(meta))
    if args.out:
        args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
