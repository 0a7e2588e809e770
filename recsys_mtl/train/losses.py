"""Per-task losses, masked and weighted per row."""

from __future__ import annotations

from typing import Callable

import torch.nn.functional as F
from torch import Tensor

# each returns the unreduced (B,) loss of logits vs targets
_LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "bce": lambda logit, y: F.binary_cross_entropy_with_logits(logit, y, reduction="none"),
    "mse": lambda pred, y: F.mse_loss(pred, y, reduction="none"),
    "mae": lambda pred, y: F.l1_loss(pred, y, reduction="none"),
    "huber": lambda pred, y: F.huber_loss(pred, y, reduction="none"),
    "ce": lambda logit, y: F.cross_entropy(logit, y.long(), reduction="none"),
}


def loss_fn(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    return _LOSSES[name]


def weighted_mean(values: Tensor, weights: Tensor) -> Tensor:
    """Weighted mean over rows (dim 0); 0 where no row counts (a fully masked batch or task).

    values, weights: (B,) -> () one task's loss (evaluation, ``task_losses``), or (B, T) -> (T,)
    every task's at once (the training step's row losses). ``sum(0)`` on (B,) is bitwise ``sum()``;
    a column of (B, T) may differ from its (B,) reduction in the last float bits (summation order).
    """
    return (values * weights).sum(0) / weights.sum(0).clamp_min(1e-12)
