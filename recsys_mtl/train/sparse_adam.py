"""Lazy (row-sparse) Adam on gathered rows: ``torch.optim.SparseAdam``'s update without its sparse tensors.

``torch.optim.SparseAdam`` builds its update from sparse-tensor operations: two ``sparse_mask``
reads of the moments and three sparse ``add_`` writes (moments and weights), each constructing a
sparse tensor and, on CPU, walking it element by element. :class:`RowSparseAdam` does the same
arithmetic on the coalesced gradient's rows with ``index_select`` (gather the rows' moments),
dense math on the (R, d) rows, and ``index_copy_`` (write them and the stepped weight rows back): the same
update, the same state (``step``, ``exp_avg``, ``exp_avg_sq``) and ``state_dict`` as
``SparseAdam``, so checkpoints move between the two.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor


class RowSparseAdam(torch.optim.SparseAdam):
    """``SparseAdam`` (lazy Adam) for (N, d) weights with sparse gradients, updated row-wise.

    Per step and weight: coalesce the gradient (duplicate lookups add up), gather the R touched
    rows' moments (R, d), update them as Adam does, write them back, and add the Adam step to
    those rows only. Rows absent from the batch keep their weights and moments (lazy Adam).
    """

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            eps, lr = group["eps"], float(group["lr"])
            sign = -1.0 if group.get("maximize", False) else 1.0
            for p in group["params"]:
                if p.grad is None:
                    continue
                if not p.grad.is_sparse:
                    raise RuntimeError("RowSparseAdam takes sparse gradients (nn.Embedding(sparse=True)); use Adam for dense ones")
                state = self.state[p]
                if not state:  # the same state as torch.optim.SparseAdam
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                grad = p.grad.coalesce()
                rows, g = grad._indices()[0], grad._values()  # (R,), (R, d)
                if g.numel() == 0:
                    continue
                if sign < 0:
                    g = -g
                self._update_rows(p, state, rows, g, beta1, beta2, eps, lr)
        return loss

    @staticmethod
    def _update_rows(p: Tensor, state: dict[str, Any], rows: Tensor, g: Tensor, beta1: float, beta2: float, eps: float, lr: float) -> None:
        """Adam on the rows ``rows`` (R,) of ``p`` with their summed gradient ``g`` (R, d)."""
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        m = exp_avg.index_select(0, rows)  # (R, d)
        v = exp_avg_sq.index_select(0, rows)
        m.lerp_(g, 1 - beta1)  # m + (1 - b1)(g - m), SparseAdam's form
        v.add_(g.square().sub_(v).mul_(1 - beta2))
        exp_avg.index_copy_(0, rows, m)
        exp_avg_sq.index_copy_(0, rows, v)
        step = state["step"]
        step_size = lr * math.sqrt(1 - beta2**step) / (1 - beta1**step)
        # the rows are unique (coalesced): gather, step and write back the weights as the moments.
        # index_add_ with an alpha scaled a copy of the update and cost 3-4x (1M-row table, CPU)
        w = p.index_select(0, rows)
        w.addcdiv_(m, v.sqrt_().add_(eps), value=-step_size)
        p.index_copy_(0, rows, w)
