"""Optimizer parameter groups and the learning-rate schedule of the training step.

Weight decay (decoupled, AdamW) applies to dense weight matrices only: biases and normalisation
parameters, embedding tables and numeric embeddings, and the balancer's own parameters (e.g.
uncertainty weighting's log-variances, which decay would pull towards equal weights) are never
decayed. Embeddings are excluded because decay shrinks every row by the same factor each step
while a rare id's row is updated only in the few batches that hold it, so rare ids would be
pulled to zero regardless of what they predict.

Schedules (``trainer.lr_schedule``), stepped per optimizer step over ``max_epochs``:

- ``constant``: the base learning rate throughout (after the optional linear warmup);
- ``cosine``: linear warmup over ``warmup_fraction`` of the steps, then cosine decay to
  ``min_lr_ratio`` × lr at the last step of ``max_epochs``;
- ``onecycle``: PyTorch's OneCycleLR (warmup to lr, cosine annealing), ``warmup_fraction`` as
  its ``pct_start``.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn

from recsys_mtl.errors import SpecError
from recsys_mtl.nn.encoders import FeatureEncoder
from recsys_mtl.nn.numeric_embeddings import NumericTokens
from recsys_mtl.spec.pipeline import TrainerConfig

#: modules whose parameters are embeddings (never decayed)
EMBEDDING_MODULES: tuple[type[nn.Module], ...] = (nn.Embedding, FeatureEncoder, NumericTokens)


def param_groups(model: nn.Module, balancer: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Named groups ``embeddings``, ``dense`` (decayed), ``dense_no_decay``, ``balancer``; empty groups dropped."""
    embedding_ids = {
        id(p) for m in model.modules() if isinstance(m, EMBEDDING_MODULES) for p in m.parameters()
    }
    groups: dict[str, list[nn.Parameter]] = {"embeddings": [], "dense": [], "dense_no_decay": []}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        key = "embeddings" if id(p) in embedding_ids else ("dense" if p.ndim >= 2 else "dense_no_decay")
        groups[key].append(p)
    out = [
        {"name": name, "params": params, "weight_decay": weight_decay if name == "dense" else 0.0}
        for name, params in groups.items()
    ]
    out.append({"name": "balancer", "params": [p for p in balancer.parameters() if p.requires_grad], "weight_decay": 0.0})
    return [g for g in out if g["params"]]


def _cosine(total: int, warmup: int, floor: float) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def lr_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainerConfig, total_steps: int | None) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The scheduler for ``cfg.lr_schedule`` over ``total_steps`` optimizer steps, or None (constant, no warmup)."""
    if cfg.lr_schedule == "constant" and not cfg.warmup_fraction:
        return None
    if total_steps is None:
        raise SpecError(
            f"trainer.lr_schedule {cfg.lr_schedule!r} / warmup_fraction need the number of training steps, "
            "unknown for this data stream: set trainer.limit_train_batches"
        )
    warmup = int(round(cfg.warmup_fraction * total_steps))
    if cfg.lr_schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=cfg.lr, total_steps=max(total_steps, 2), pct_start=max(cfg.warmup_fraction, 1e-3),
            anneal_strategy="cos", cycle_momentum=False, final_div_factor=1.0 / max(cfg.min_lr_ratio, 1e-4) / 25.0,
        )
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, _cosine(total_steps, warmup, cfg.min_lr_ratio))
    if warmup:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
    return None


def configure(model: nn.Module, balancer: nn.Module, cfg: TrainerConfig, total_steps: int | None) -> dict[str, Any]:
    """Lightning's ``configure_optimizers`` answer: AdamW over :func:`param_groups` and the step-wise schedule."""
    optimizer = torch.optim.AdamW(param_groups(model, balancer, cfg.weight_decay), lr=cfg.lr)
    scheduler = lr_scheduler(optimizer, cfg, total_steps)
    if scheduler is None:
        return {"optimizer": optimizer}
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "name": "lr"}}
