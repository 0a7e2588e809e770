"""``trainer.steps_per_execution``: several optimizer steps per Lightning training step.

Lightning's per-batch machinery (the fetcher, batch transfer, progress tracking, callback and
module hooks, the logger connector) costs ~1.2 ms of a ~7.3 ms one-thread census MMoE step.
As Keras' ``steps_per_execution`` does, the training loader here hands over groups of K
consecutive batches (:class:`GroupedLoader`: exactly the batches, rows and order K = 1 yields; an
epoch's last group may be shorter), and one Lightning training step runs K optimizer steps over
them (:func:`run_group`, under Lightning's manual optimization), so that machinery runs once per
group.

Every step of a group does what Lightning's automatic optimization does for one batch, in its
order: ask the balancer whether the optimizer steps after this batch (GCond's window), forward +
balancing + the finite-loss guard, clear gradients when the balancer says so, backward (outside
autocast, as Lightning's closure), gradient clipping after ``on_before_optimizer_step`` (so after
16-mixed's unscale), the optimizer step through Lightning's optimizer wrapper (which counts
``trainer.global_step``; a batch the balancer accumulates counts too, as under K = 1), the step-wise LR schedulers, then the module's per-batch work
(:meth:`~recsys_mtl.train.module.MultiTaskModule.after_batch`: balancer post-step losses, id-row
max-norm, RMTL's soft update). Weights, optimizer state and balancer buffers after an epoch are
bit-identical to K = 1's (fp32, eager, deterministic; ``tests/train/test_steps_per_execution.py``).

What differs from K = 1 (what Lightning allows):

- callbacks' per-batch hooks (``on_train_batch_start`` / ``_end``) and the module's run once per
  group, with the list of batches; callbacks that read single training batches declare
  ``reads_training_batches = True`` and are refused (data maps, lookahead affinity);
  :class:`~recsys_mtl.train.callbacks.Throughput` counts the group's rows;
- per-step scalars (``train/*``, ``balance/*``) are written to the loggers directly, at the same
  steps as K = 1 (every ``log_every_n_steps``-th batch); scalars other code logs with
  ``self.log`` inside the step (RMTL's critic loss) are written once per group; the progress bar
  shows the group's last loss;
- Lightning's batch counter (the loggers' step, saved in checkpoints) is advanced to count
  batches, not groups, so validation metrics land at the same steps as K = 1;
- ``trainer.global_step`` counts optimizer steps (batches) as with K = 1, but Lightning reads it
  once per group: a checkpoint every N training steps or ``max_steps`` (neither is used by
  ``fit``: checkpoints, early stopping and validation are per epoch) would act at the first group
  end at or past the step; resuming restarts at an epoch boundary, as with K = 1;
- ``trainer.val_check_interval`` (validation every N batches) is refused, as is any strategy but
  a single process (DDP all-reduces gradients once per forward of its wrapper, and a group runs
  K backward passes inside one: the other K − 1 would not be synchronized).
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Protocol

import lightning as L
import torch
from lightning.pytorch.strategies import SingleDeviceStrategy
from torch import Tensor

from recsys_mtl.data.tensors import Batch
from recsys_mtl.errors import SpecError
from recsys_mtl.spec.pipeline import TrainerConfig

FIELD = "trainer.steps_per_execution"


class _BatchLoader(Protocol):
    def __iter__(self) -> Iterator[Batch]: ...
    def __len__(self) -> int: ...


class GroupedLoader:
    """Groups of ``size`` consecutive batches of ``loader`` (at most ``limit`` batches an epoch).

    A loader with ``iter_groups(size, limit)`` (:class:`~recsys_mtl.data.loader.ColumnBatchLoader`:
    one gather of the group's rows, split into per-batch views) serves them itself; any other
    (the streaming loader) is grouped as it yields. ``set_epoch`` goes to ``loader``.
    """

    def __init__(self, loader: _BatchLoader, size: int, limit: int | None = None):
        if size < 1:
            raise ValueError(f"{FIELD}: groups of {size} batches; use at least 1")
        self.loader, self.size, self.limit = loader, size, limit

    def set_epoch(self, epoch: int) -> None:
        set_epoch = getattr(self.loader, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)

    def batches_per_epoch(self) -> int:
        """Batches (optimizer steps) an epoch runs: the loader's, capped by ``limit``."""
        n = len(self.loader)
        return n if self.limit is None else min(n, self.limit)

    def __len__(self) -> int:
        return -(-self.batches_per_epoch() // self.size)

    def __iter__(self) -> Iterator[list[Batch]]:
        own = getattr(self.loader, "iter_groups", None)
        if callable(own):
            yield from own(self.size, self.limit)
            return
        group: list[Batch] = []
        for i, batch in enumerate(self.loader):
            if self.limit is not None and i >= self.limit:
                break
            group.append(batch)
            if len(group) == self.size:
                yield group
                group = []
        if group:
            yield group


def batch_rows(batch: Batch | list[Batch]) -> int:
    """Training rows in a batch, or in a group of batches."""
    if isinstance(batch, list):
        return sum(b["labels"].shape[0] for b in batch)
    return int(batch["labels"].shape[0])


def check_trainer_config(t: TrainerConfig) -> None:
    """SpecError naming ``trainer.steps_per_execution`` for settings it cannot keep (config time)."""
    if t.steps_per_execution > 1 and t.val_check_interval is not None:
        raise SpecError(f"{FIELD}: {t.steps_per_execution} runs batches in groups, so validation cannot come after a "
                        f"given batch; trainer.val_check_interval ({t.val_check_interval}) needs {FIELD}: 1")


def check_ray(t: TrainerConfig) -> None:
    """SpecError for a Ray Train fit (DDP workers, always) with groups, before Ray starts."""
    if t.steps_per_execution > 1:
        raise SpecError(f"{FIELD}: {t.steps_per_execution} is not supported with --engine ray (DDP workers synchronize "
                        f"gradients once per forward, a group runs K backward passes inside one); set {FIELD}: 1")


def check_strategy(strategy: object, k: int) -> None:
    """SpecError unless one process trains (DDP synchronizes gradients once per wrapper forward,
    a group runs K backward passes inside one)."""
    if k > 1 and not isinstance(strategy, SingleDeviceStrategy):
        raise SpecError(f"{FIELD}: {k} needs a single training process; strategy {type(strategy).__name__} "
                        "synchronizes gradients once per forward of its wrapper, and a group runs K backward passes "
                        f"inside one (the others would not be synchronized): set {FIELD}: 1 for DDP / Ray workers")


def check_callbacks(callbacks: Iterable[L.Callback], k: int) -> None:
    """SpecError for callbacks that read single training batches (their hooks would get groups)."""
    if k == 1:
        return
    readers = [type(c).__name__ for c in callbacks if getattr(c, "reads_training_batches", False)]
    if readers:
        raise SpecError(f"{FIELD}: {k} hands callbacks groups of batches, but {', '.join(readers)} reads single "
                        f"training batches; set {FIELD}: 1 to use it")


def lightning_arguments(t: TrainerConfig) -> dict[str, Any]:
    """``L.Trainer`` arguments that depend on ``t.steps_per_execution``: with groups, clipping is
    the module's (Lightning refuses it under manual optimization) and the batch limit the loader's
    (Lightning's would count groups)."""
    if t.steps_per_execution == 1:
        return {"gradient_clip_val": t.gradient_clip_val, "limit_train_batches": t.limit_train_batches}
    return {"gradient_clip_val": None, "limit_train_batches": None}


class _GroupModule(Protocol):
    """What :func:`run_group` needs of the training module."""

    trainer: L.Trainer
    balancer: Any
    cfg: TrainerConfig
    device: torch.device

    def optimizers(self) -> Any: ...
    def lr_schedulers(self) -> Any: ...
    def lr_scheduler_step(self, scheduler: Any, metric: Any) -> None: ...
    def manual_backward(self, loss: Tensor) -> None: ...
    def step_total(self, batch: Batch, logs: bool) -> tuple[Tensor, dict[str, Tensor]]: ...
    def after_batch(self, batch: Batch) -> None: ...
    def log(self, name: str, value: Any, **kwargs: Any) -> None: ...
    @property
    def loggers(self) -> list[Any]: ...
    @property
    def current_epoch(self) -> int: ...


def _schedulers(module: _GroupModule) -> list[Any]:
    found = module.lr_schedulers()
    return [] if found is None else list(found) if isinstance(found, list) else [found]


def run_group(module: _GroupModule, group: list[Batch], shows_progress: bool) -> Tensor:
    """One optimizer step per batch of ``group`` (see the module docstring); returns the last
    step's () detached total loss."""
    trainer = module.trainer
    optimizer = module.optimizers()
    schedulers = _schedulers(module)
    loop = trainer.fit_loop.epoch_loop
    first = loop._batches_that_stepped  # batches run before this group (K = 1's logger step)
    every = trainer.log_every_n_steps
    total = torch.zeros(())
    for i, batch in enumerate(group):
        steps = module.balancer.steps_optimizer()  # asked before the batch's forward, as K = 1 does
        logs = (first + i + 1) % every == 0
        total, scalars = module.step_total(batch, logs)
        if module.balancer.zeroes_gradients():
            optimizer.zero_grad()
        with torch.autocast(module.device.type, enabled=False):  # K = 1's backward runs outside autocast
            module.manual_backward(total)
        if steps:
            optimizer.step()  # on_before_optimizer_step (clipping) inside; counts trainer.global_step
        else:
            # K = 1's automatic optimization counts every batch as a step, stepped or accumulated
            # (GCond's window); the wrapper's own counting hooks, without the step
            optimizer._on_before_step()
            optimizer._on_after_step()
        for scheduler in schedulers:
            module.lr_scheduler_step(scheduler, None)
        module.after_batch(batch)
        if logs and scalars:
            values = {k: float(v.detach()) if isinstance(v, Tensor) else float(v) for k, v in scalars.items()} | {"epoch": module.current_epoch}
            for logger in module.loggers:
                logger.log_metrics(values, step=first + i)
    # Lightning adds one per training step; the loggers' step and checkpoints count batches, as with K = 1
    loop._batches_that_stepped = first + len(group) - 1
    if shows_progress:
        module.log("train/loss", total.detach(), prog_bar=True, logger=False, batch_size=batch_rows(group[-1]))
    return total.detach()
