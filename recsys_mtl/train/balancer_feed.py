"""Extra losses a balancing strategy asks the training loop for (``Balancer.post_step``).

FAMO needs the same batch's losses after the optimizer step; CoBa needs a sampled validation
batch after every step and the full validation losses before training. This helper computes
them for the LightningModule, so the module never branches on the strategy.
"""

from __future__ import annotations

from typing import Any, Iterator, Protocol

import torch
from torch import Tensor

from recsys_mtl.balancing.base import Balancer
from recsys_mtl.data.tensors import Batch


class _Module(Protocol):
    """What the feed needs of the training module (it is given the module; it never imports it)."""

    balancer: Balancer
    tasks: Any
    trainer: Any
    training: bool
    device: torch.device
    global_step: int

    def __call__(self, batch: Batch) -> Any: ...
    def eval(self) -> Any: ...
    def train(self, mode: bool = True) -> Any: ...
    def transfer_batch_to_device(self, batch: Batch, device: torch.device, dataloader_idx: int) -> Batch: ...
    def task_losses(self, outputs: Any, batch: Batch) -> Tensor: ...
    def task_loss_sums(self, outputs: Any, batch: Batch) -> tuple[Tensor, Tensor]: ...
    def exact_losses(self, sums: Tensor, weights: Tensor) -> Tensor: ...


class BalancerFeed:
    def __init__(self, module: _Module):
        self._module = module
        self._val_iter: Iterator[Batch] | None = None

    def _val_loader(self):  # type: ignore[no-untyped-def]
        dm = getattr(self._module.trainer, "datamodule", None)
        if dm is None:
            raise RuntimeError(f"balancing {type(self._module.balancer).__name__} needs a validation split (a datamodule)")
        return dm.val_dataloader()

    @torch.no_grad()
    def _evaluate(self, batches: list[Batch]) -> Tensor:
        """(T,) exact masked losses over ``batches`` (all ranks), model in eval mode."""
        m = self._module
        was_training = m.training
        m.eval()
        T = len(m.tasks)
        sums, weights = torch.zeros(T, device=m.device), torch.zeros(T, device=m.device)
        for batch in batches:
            batch = m.transfer_batch_to_device(batch, m.device, 0)
            s, w = m.task_loss_sums(m(batch), batch)
            sums, weights = sums + s, weights + w
        m.train(was_training)
        return m.exact_losses(sums, weights).detach()

    def on_train_start(self) -> None:
        balancer = self._module.balancer
        if balancer.post_step == "validation_batch" and not balancer.has_reference():
            balancer.set_reference(self._evaluate(list(self._val_loader())).cpu())

    def _next_val_batches(self, n: int) -> list[Batch]:
        out = []
        for _ in range(n):
            try:
                assert self._val_iter is not None
                out.append(next(self._val_iter))
            except (StopIteration, AssertionError):
                self._val_iter = iter(self._val_loader())  # cycle through the split, as the reference does
                out.append(next(self._val_iter))
        return out

    def after_step(self, batch: Batch) -> None:
        m = self._module
        balancer = m.balancer
        if balancer.post_step == "same_batch":
            # the reference re-evaluates the batch in training mode (dropout, batch statistics)
            with torch.no_grad():
                losses = m.task_losses(m(batch), batch).detach()
        elif balancer.post_step == "validation_batch":
            losses = self._evaluate(self._next_val_batches(balancer.validation_batches()))
        else:
            return
        balancer.after_step(losses.float().cpu(), m.global_step)
