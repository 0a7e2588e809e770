"""One Lightning training step, part by part, as ``trainer.fit`` runs it (not just the model).

    cd benchmarks && OMP_NUM_THREADS=1 python step_anatomy.py --precision bf16-mixed --epochs 2
    cd benchmarks && OMP_NUM_THREADS=1 python step_anatomy.py --precision 32-true --epochs 2

The census plain MMoE that ``rechub_compare.py`` trains (8 experts × [64], towers [32], batch
1024), fitted by the package's own trainer (``make_trainer`` + :class:`TableDataModule`). Every
part of a step is clocked in this thread's CPU time (``time.thread_time``: one torch thread runs
intra-op work and the autograd engine in the calling thread) by wrapping the function that does
it; a part's time includes the parts below it:

- ``fetch``: the loader's ``next`` (batch slicing); ``transfer``: Lightning's batch transfer hooks;
- ``training_step``: ``forward`` (the model under autocast), ``loss`` (per-row losses, weighted
  means), ``guard`` (finite checks), ``balancer``, ``regularization`` (+ auxiliary), ``log``;
- ``backward``, ``optimizer`` (the torch optimizer's own step: fused AdamW), ``zero_grad``;
- ``batch_end``: the module's ``on_train_batch_end`` (balancer feed, the model's after-step);
- ``callbacks``: every callback's ``on_train_batch_start`` / ``on_train_batch_end`` /
  ``on_before_backward`` / ... (Lightning's ``_call_callback_hooks`` during training batches);
- ``lightning``: the step (``TrainClock``'s batch end to batch end) less all of the above.

Prints ms per step (epochs after the first; validation excluded), and JSON to ``--out``.
``--torch-profile N`` also prints torch.profiler's top ops (self CPU) over N steps of the last epoch.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch

from rechub_compare import PIPELINE, PLAIN
from recsys_mtl.data.loader import ColumnBatchLoader
from recsys_mtl.spec import load_pipeline
from recsys_mtl.train import module as module_mod
from recsys_mtl.train.datamodule import TableDataModule
from recsys_mtl.train.fit import build_module, make_trainer, prepare


class Parts:
    """Inclusive thread-CPU seconds per part, counted only while ``on`` (training batches)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.on = False

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if not self.on:
                return fn(*args, **kwargs)
            c = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.thread_time() - c
        return timed


@contextlib.contextmanager
def patched(targets: list[tuple[object, str, str]], parts: Parts) -> Iterator[None]:
    """Wrap ``getattr(obj, attr)`` as part ``name`` for each (obj, attr, name); restored on exit."""
    missing = object()
    saved = [(obj, attr, vars(obj).get(attr, missing)) for obj, attr, _ in targets]
    for obj, attr, name in targets:
        setattr(obj, attr, parts.wrap(name, getattr(obj, attr)))
    try:
        yield
    finally:
        for obj, attr, value in reversed(saved):  # an attribute inherited before: delete the wrapper
            if value is missing:
                delattr(obj, attr)
            else:
                setattr(obj, attr, value)


class Window(L.Callback):
    """Switches the clocks on for training batches of epochs after the first, and counts steps."""

    def __init__(self, parts: Parts, profile_steps: int, last_epoch: int, by_shape: bool = False) -> None:
        self.by_shape = by_shape
        self.parts, self.steps, self.cpu = parts, 0, 0.0
        self.profile_steps, self.last_epoch = profile_steps, last_epoch
        self.prof: torch.profiler.profile | None = None
        self._mark = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.parts.on = trainer.current_epoch > 0
        self._mark = time.thread_time()
        if self.profile_steps and trainer.current_epoch == self.last_epoch:
            self.prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=bool(self.by_shape), with_stack=bool(os.environ.get("ANATOMY_STACK")))
            self.prof.__enter__()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        now = time.thread_time()
        if self.parts.on and batch["labels"].shape[0] == trainer.datamodule.batch_size:  # full batches only
            self.cpu += now - self._mark
            self.steps += 1
        if self.prof is not None and batch_idx + 1 == self.profile_steps:
            self.prof.__exit__(None, None, None)
            if os.environ.get("ANATOMY_STACK"):
                ka = self.prof.key_averages(group_by_input_shape=self.by_shape, group_by_stack_n=8)
                for e in sorted(ka, key=lambda e: -e.self_cpu_time_total)[:25]:
                    print(e.key, e.input_shapes, f"self {e.self_cpu_time_total / self.profile_steps:.0f} us/step", e.count, *e.stack[:8], sep="\n    ")
            else:
                print(self.prof.key_averages(group_by_input_shape=self.by_shape).table(sort_by="self_cpu_time_total", row_limit=40))
            self.prof = None
        self._mark = time.thread_time()

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.parts.on = False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--precision", default="bf16-mixed")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--set", nargs="*", default=[], help="more pipeline overrides")
    ap.add_argument("--torch-profile", type=int, default=0, metavar="STEPS")
    ap.add_argument("--by-shape", action="store_true", help="torch.profiler's table per op and input shapes")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    parts = Parts()
    M = module_mod.MultiTaskModule
    from lightning.pytorch.trainer import call

    targets: list[tuple[object, str, str]] = [
        (M, "forward", "forward"), (M, "step_rows", "loss"), (module_mod, "weighted_mean", "loss"),
        (M, "_guard", "guard"), (M, "log", "log"), (M, "logs_this_step", "log"),
        (M, "backward", "backward"), (M, "optimizer_zero_grad", "zero_grad"), (M, "on_train_batch_end", "batch_end"),
        (M, "training_step", "training_step"), (M, "_apply_batch_transfer_handler", "transfer"),
        (call, "_call_callback_hooks", "callbacks"),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        cfg, spec = load_pipeline(PIPELINE, [*PLAIN, f"runs_dir={tmp}", "trainer.progress_bar=false",
                                             f"trainer.max_epochs={args.epochs}", f"trainer.precision={args.precision}", *args.set])
        prep = prepare(cfg, spec)
        module = build_module(prep)
        t = cfg.trainer
        dm = TableDataModule(prep.train, prep.valid, None, t.batch_size, t.eval_batch_size, t.seed)
        window = Window(parts, args.torch_profile, args.epochs - 1, args.by_shape)
        trainer, _, _ = make_trainer(cfg, Path(tmp), [window])
        original_iter = ColumnBatchLoader.__iter__

        def timed_iter(self: ColumnBatchLoader) -> Iterator[Any]:
            inner = original_iter(self)
            while True:
                c = time.thread_time()
                try:
                    batch = next(inner)
                except StopIteration:
                    return
                finally:
                    if parts.on:
                        parts.seconds["fetch"] += time.thread_time() - c
                yield batch

        balancer = module.balancer
        reg = module.model
        targets += [(type(balancer), "__call__", "balancer"), (type(reg), "regularization", "regularization"),
                    (type(reg), "auxiliary_loss", "regularization")]
        ColumnBatchLoader.__iter__ = timed_iter  # type: ignore[method-assign]
        try:
            with patched(targets, parts):
                # the optimizer's own step (under Lightning's closure wrapper): wrap once it exists
                class OptClock(L.Callback):
                    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
                        opt = trainer.optimizers[0]
                        inner_step = type(opt).step

                        def step(closure: Any = None) -> Any:
                            if closure is None:
                                return parts.wrap("optimizer", lambda: inner_step(opt))()
                            # closure (forward + backward) runs first, then the update alone is clocked
                            loss = closure()
                            parts.wrap("optimizer", lambda: inner_step(opt))()
                            return loss
                        opt.step = step  # type: ignore[method-assign]

                trainer.callbacks.append(OptClock())
                trainer.fit(module, datamodule=dm)
        finally:
            ColumnBatchLoader.__iter__ = original_iter  # type: ignore[method-assign]
    n = window.steps
    ms = {k: v * 1000 / n for k, v in parts.seconds.items()}
    step = window.cpu * 1000 / n
    inner = ("forward", "loss", "guard", "balancer", "regularization", "log")
    ms["training_step (own)"] = ms.get("training_step", 0) - sum(ms.get(k, 0) for k in inner)
    outer = ("fetch", "transfer", "training_step", "backward", "optimizer", "zero_grad", "batch_end", "callbacks")
    ms["lightning (rest)"] = step - sum(ms.get(k, 0) for k in outer)
    print(f"| part | ms per step | share |\n|---|---|---|")
    for k in (*outer[:2], "training_step", *inner, "training_step (own)", *outer[3:], "lightning (rest)"):
        print(f"| {k} | {ms.get(k, 0):.3f} | {100 * ms.get(k, 0) / step:.1f}% |")
    print(f"| **step** | **{step:.3f}** | steps {n} |")
    meta = {"precision": args.precision, "steps": n, "step_ms": round(step, 3), "load": os.getloadavg(), "threads": torch.get_num_threads()}
    print(json.dumps(meta))
    if args.out:
        args.out.write_text(json.dumps({"meta": meta, "ms": {k: round(v, 3) for k, v in ms.items()}}, indent=1) + "\n")


if __name__ == "__main__":
    main()
