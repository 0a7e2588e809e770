"""Lightning fit of the peer-sized census MMoE: ``self.log`` at every step against only at logging steps.

    cd benchmarks && OMP_NUM_THREADS=1 python step_logging_ab.py --rounds 3 --epochs 1

Same model, data and trainer as ``naive_loop.py``'s ``lightning`` variant. ``before``: the
training step as it was (``train/loss`` logged at every step; per-task losses when
``global_step % log_every_n_steps == 0``), the old code kept below and patched in; ``after``: the
package's :meth:`MultiTaskModule.training_step` (every scalar only at the steps Lightning writes,
``train/loss`` also at every step while a progress bar shows it: none here, as in CI or a
benchmark). Alternated per round; prints training-batch rows per process-CPU second
(:class:`TrainClock`: validation and start-up excluded) and after / before per round.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import tempfile
from pathlib import Path

from torch import Tensor

from naive_loop import PEER, ROOT
from recsys_mtl.balancing.base import StepContext
from recsys_mtl.data.tensors import Batch
from recsys_mtl.spec import load_pipeline
from recsys_mtl.train.datamodule import TableDataModule
from recsys_mtl.train.fit import build_module, make_trainer, prepare
from recsys_mtl.train.losses import weighted_mean
from recsys_mtl.train.module import MultiTaskModule
from train_clock import TrainClock


def old_training_step(self: MultiTaskModule, batch: Batch, batch_idx: int) -> Tensor:
    """MultiTaskModule.training_step before the change (logging part as it was)."""
    logits = self(batch)
    rows = self.step_rows(logits, batch)
    losses = weighted_mean(*rows)
    aux = self.model.auxiliary_loss()
    self._guard(batch, logits, losses, losses.sum() if aux is None else losses.sum() + aux)
    ctx = StepContext(step=self.global_step, epoch=self.current_epoch, model=self.model, shared=self.shared.pop(),
                      shared_params=self.shared.params, evaluate=lambda: self._reevaluate(batch), rows=rows)
    total = self.balancer(losses, ctx)
    n = batch["labels"].shape[0]
    self._guard(batch, None, losses, total)
    self.log("train/loss", total, prog_bar=True, batch_size=n)
    if self.global_step % self.cfg.log_every_n_steps == 0:
        for i, name in enumerate(self.model.task_names):
            self.log(f"train/{name}/loss", losses[i], batch_size=n)
        for name, w in self.balancer.weight_dict().items():
            self.log(f"balance/{name}/weight", w, batch_size=n)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=1)
    args = ap.parse_args()
    new_step = MultiTaskModule.training_step
    with tempfile.TemporaryDirectory() as tmp:
        cfg, spec = load_pipeline(ROOT / "pipelines" / "census_mmoe.yaml", [*PEER, f"runs_dir={tmp}", f"trainer.max_epochs={args.epochs}"])
        t = cfg.trainer
        prep = prepare(cfg, spec)
        module = build_module(prep)
        copies = [copy.deepcopy(module) for _ in range(2 * args.rounds)]
        rates: dict[str, list[float]] = {"before": [], "after": []}
        for r in range(args.rounds):
            for i, variant in enumerate(rates):
                MultiTaskModule.training_step = old_training_step if variant == "before" else new_step  # type: ignore[method-assign]
                try:
                    clock = TrainClock()
                    trainer, _, _ = make_trainer(cfg, Path(tmp) / f"run{r}{variant}", [clock])
                    trainer.fit(copies[2 * r + i], datamodule=TableDataModule(prep.train, prep.valid, None, t.batch_size, t.eval_batch_size, t.seed))
                finally:
                    MultiTaskModule.training_step = new_step  # type: ignore[method-assign]
                rates[variant].append(clock.rows_per_sec()[1])
                print(json.dumps({"round": r, "variant": variant, "rows_per_cpu_sec": round(rates[variant][-1]), "load": os.getloadavg()}), flush=True)
    ratios = [a / b for a, b in zip(rates["after"], rates["before"])]
    print(json.dumps({"after_over_before_per_round": [round(x, 3) for x in ratios], "median": round(statistics.median(ratios), 3)}))


if __name__ == "__main__":
    main()
