"""The whole Lightning training step before and after the h49 changes, alternating fits in one process.

    cd benchmarks && OMP_NUM_THREADS=1 python lightning_step_ab.py --rounds 4 --epochs 2 --precision bf16-mixed
    cd benchmarks && OMP_NUM_THREADS=1 python lightning_step_ab.py --rounds 4 --epochs 2 --precision 32-true

The census plain MMoE that ``rechub_compare.py`` trains (8 experts × [64], towers [32], batch
1024), fitted by the package's trainer (``make_trainer`` + :class:`TableDataModule`), each fit a
deep copy of the same initial module. ``before`` patches the code as it was back in (kept below);
``after`` is the package. The changes (``--variants`` may name any of them alone, ``after`` minus
one as ``-NAME``):

- ``gates``: MMoE gates' softmax over the E axis of one (T, E, B) stack (``blocks.gate_weights``)
  instead of a (B, E) softmax per gate;
- ``loader``: each shuffled batch gathered on its own instead of an epoch-wide gather of every column;
- ``guard``: the finite checks as one scalar read each instead of cat + isfinite + all;
- ``loss``: all-BCE tasks' row losses as one (B, T) BCE instead of one per task and a stack;
- ``walks``: the model's encoders found once per phase (``MultiTaskModel.modules_of``) instead of
  walking every module in ``regularization`` and ``after_step`` at every step;
- ``balancer``: equal / static weights' collapse watch counted on the host (``constant_weights``)
  instead of tensor ops and a host read at every step.

Variants take turns within every round; prints training-batch rows per process-CPU second
(:class:`TrainClock`, epochs after the first: validation and start-up excluded) and each
variant / ``before``, per round and the median.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import statistics
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from code_patches import applied
from rechub_compare import PIPELINE, PLAIN
from recsys_mtl.balancing.static import EqualWeights, StaticWeights
from recsys_mtl.data.loader import ColumnBatchLoader
from recsys_mtl.data.tensors import Batch, slice_batch
from recsys_mtl.models.base import MultiTaskModel
from recsys_mtl.nn import blocks
from recsys_mtl.spec import load_pipeline
from recsys_mtl.train.datamodule import TableDataModule
from recsys_mtl.train.fit import build_module, make_trainer, prepare
from recsys_mtl.train.finite_guard import NonFiniteLossError
from recsys_mtl.train.module import MultiTaskModule
from train_clock import TrainClock


def old_gate_weights(gates: Any, logits: Any) -> list[Tensor]:
    return [gate.weights(z) for gate, z in zip(gates, logits)]


def old_iter(self: ColumnBatchLoader) -> Iterator[Batch]:
    columns = self._columns
    if self.shuffle or self.world_size > 1:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.table), generator=g) if self.shuffle else torch.arange(len(self.table))
        per_rank = self._rows()
        if self.world_size > 1:
            order = order[self.rank * per_rank : (self.rank + 1) * per_rank]
        columns = {k: v.index_select(0, order) for k, v in self._columns.items()}
    self.epoch += 1
    n = self._rows()
    for b in range(len(self)):
        start = b * self.batch_size
        yield slice_batch(columns, start, min(start + self.batch_size, n))


def old_guard(self: MultiTaskModule, batch: Batch, logits: Any, losses: Tensor, total: Tensor) -> None:
    bad = not bool(torch.isfinite(torch.cat([losses.detach().reshape(-1), total.detach().reshape(1).to(losses.dtype)])).all())
    if self._trainer is not None and self.trainer.world_size > 1:
        bad = self.trainer.strategy.reduce_boolean_decision(bad, all=False)
    if bad:
        raise NonFiniteLossError("not finite")


def old_step_rows(self: MultiTaskModule, logits: dict[str, Tensor], batch: Batch) -> tuple[Tensor, Tensor]:
    return torch.stack(self._row_losses(logits, batch), dim=1) * self.task_weights, batch["weights"]


def old_modules_of(self: MultiTaskModel, kind: type) -> list[Any]:
    return [m for m in self.modules() if isinstance(m, kind)]


#: change → (object, attribute, the code before it)
PATCHES: dict[str, list[tuple[object, str, object]]] = {
    "gates": [(blocks, "gate_weights", old_gate_weights)],
    "loader": [(ColumnBatchLoader, "__iter__", old_iter)],
    "guard": [(MultiTaskModule, "_guard", old_guard)],
    "loss": [(MultiTaskModule, "step_rows", old_step_rows)],
    "walks": [(MultiTaskModel, "modules_of", old_modules_of)],
    "balancer": [(EqualWeights, "constant_weights", False), (StaticWeights, "constant_weights", False)],
}


def patches_of(variant: str) -> list[str]:
    """The changes ``variant`` undoes: before = all, after = none, NAME = all but NAME, -NAME = NAME."""
    if variant == "before":
        return list(PATCHES)
    if variant == "after":
        return []
    if variant.startswith("-"):
        return [variant[1:]]
    return [p for p in PATCHES if p != variant]


def code_of(variant: str) -> contextlib.AbstractContextManager[None]:
    """The package's code with ``variant``'s patches applied, restored on exit."""
    return applied(p for name in patches_of(variant) for p in PATCHES[name])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--precision", default="bf16-mixed")
    ap.add_argument("--variants", default="before,after")
    ap.add_argument("--set", nargs="*", default=[], help="more pipeline overrides")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    variants = args.variants.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        cfg, spec = load_pipeline(PIPELINE, [*PLAIN, f"runs_dir={tmp}", "trainer.progress_bar=false", f"trainer.max_epochs={args.epochs}",
                                             f"trainer.precision={args.precision}", "trainer.patience=100", *args.set])
        t = cfg.trainer
        prep = prepare(cfg, spec)
        module = build_module(prep)
        rates: dict[str, list[float]] = {v: [] for v in variants}
        # copies made before any fit (a fitted module holds graph tensors deepcopy refuses)
        copies = {(r, v): copy.deepcopy(module) for r in range(args.rounds) for v in variants}
        for r in range(args.rounds):
            for v in variants:
                clock = TrainClock()
                with code_of(v):
                    trainer, _, _ = make_trainer(cfg, Path(tmp) / f"run{r}{v}", [clock])
                    trainer.fit(copies[r, v], datamodule=TableDataModule(prep.train, prep.valid, None, t.batch_size, t.eval_batch_size, t.seed))
                rows_per_epoch = clock.rows / len(clock.cpu)
                later = clock.cpu[1:] or clock.cpu
                rates[v].append(rows_per_epoch * len(later) / sum(later))
                print(json.dumps({"round": r, "variant": v, "steady_rows_per_cpu_sec": round(rates[v][-1]),
                                  "step_ms": round(1024 / rates[v][-1] * 1000, 3), "load": os.getloadavg()}), flush=True)
    base = variants[0]
    summary: dict[str, Any] = {"precision": args.precision, "rounds": args.rounds, "epochs": args.epochs, "threads": torch.get_num_threads()}
    for v in variants[1:]:
        per = [a / b for a, b in zip(rates[v], rates[base])]
        summary[f"{v}/{base}"] = {"per_round": [round(x, 3) for x in per], "median": round(statistics.median(per), 3)}
    summary["median_rows_per_cpu_sec"] = {v: round(statistics.median(x)) for v, x in rates.items()}
    print(json.dumps(summary))
    if args.out:
        args.out.write_text(json.dumps({"summary": summary, "rates": rates}, indent=1) + "\n")


if __name__ == "__main__":
    main()
