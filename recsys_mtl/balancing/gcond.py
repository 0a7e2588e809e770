"""GCond, "Gradient Conductor" (Limarenko & Studenikina, 2025): PCGrad-style conflict resolution
decided on accumulated gradients, with arbitration between conflicting tasks.

Our reading of the method (written from the paper's description, not its code): per-task
gradients of the shared module's parameters are summed over ``accum_steps`` steps (low-variance
estimates) and blended with the previous window (``momentum``, the history); conflicts are then
resolved on those accumulated gradients. Arbitration: in a conflicting pair (cosine below
``threshold``) the task with the higher priority — the larger loss ratio ``L_t/L_t(0)``, i.e. the
one lagging behind — keeps its gradient and the other is projected onto its normal plane (PCGrad
projects both). The resulting task coefficients steer every step of the next window.
"""

from __future__ import annotations

from typing import Sequence

import torch
from pydantic import Field
from torch import Tensor

from recsys_mtl.balancing.base import BALANCERS, Balancer, BalancerConfig, StepContext
from recsys_mtl.balancing.gradients import global_gram, redirect, task_gradients


def arbitrate(K: Tensor, priority: Tensor, threshold: float = 0.0) -> tuple[Tensor, int]:
    """Coefficients C (T, T) of the resolved gradients ``ĝ_i = Σ_s C[i, s]·g_s`` and the number of
    projections, from the Gram matrix K of the accumulated gradients and per-task priorities.

    Tasks are visited from highest priority down; each is projected off every higher-priority
    task's gradient it conflicts with (cos < ``threshold``). Higher-priority gradients stay intact.
    """
    T = K.shape[0]
    C = torch.eye(T, dtype=K.dtype)
    order = torch.argsort(priority.cpu(), descending=True).tolist()
    projections = 0
    for rank, i in enumerate(order):
        for j in order[:rank]:
            dot = C[i] @ K[:, j]
            norm_i = (C[i] @ K @ C[i]).clamp_min(0).sqrt()
            norm_j = K[j, j].clamp_min(0).sqrt()
            if norm_i * norm_j <= 0:
                continue
            if dot / (norm_i * norm_j) < threshold:
                C[i, j] -= dot / K[j, j]
                projections += 1
    return C, projections


class GCondConfig(BalancerConfig):
    #: steps whose per-task gradients are summed before each arbitration
    accum_steps: int = Field(8, ge=1)
    #: share of the previous window's accumulated gradient kept in the next (history)
    momentum: float = Field(0.5, ge=0, lt=1)
    #: cosine below which two accumulated gradients are in conflict
    threshold: float = Field(0.0, ge=-1, le=1)


@BALANCERS.register("gcond")
class GCond(Balancer):
    """See the module docstring. Works on the shared module's parameters (a fixed space, so
    gradients can be accumulated across batches). Logs the task coefficients and
    ``conflict_rate`` of the last arbitration."""

    Config = GCondConfig

    def __init__(self, task_names: Sequence[str], config: GCondConfig):
        super().__init__(task_names, config)
        T = len(task_names)
        self.accumulated: Tensor | None = None  # (T, P), created on first use
        self.history: Tensor | None = None
        self.register_buffer("count", torch.zeros((), dtype=torch.long))
        self.register_buffer("initial_losses", torch.zeros(T))
        self.register_buffer("loss_sum", torch.zeros(T))
        self.conflict_rate = 0.0

    def combine(self, losses: Tensor, ctx: StepContext) -> Tensor:
        targets = [p for p in ctx.shared_params if p.requires_grad]
        G = task_gradients(losses, targets)
        global_gram(G, per_sample=False)  # averages G over DDP ranks in place
        self.observe(G, losses.detach())
        return redirect(losses, targets, G, self.last_weights.to(G) @ G)

    @torch.no_grad()
    def observe(self, G: Tensor, losses: Tensor) -> None:
        """Accumulate one step's (T, P) gradients; arbitrate when the window is full."""
        cfg: GCondConfig = self.config  # type: ignore[assignment]
        losses = losses.float().to(self.loss_sum.device)
        if bool((self.initial_losses == 0).all()):
            self.initial_losses.copy_(losses.clamp_min(1e-12))
        self.accumulated = G.clone() if self.accumulated is None else self.accumulated + G
        self.loss_sum += losses
        self.count += 1
        if int(self.count) < cfg.accum_steps:
            return
        window = self.accumulated
        if self.history is not None:
            window = window + cfg.momentum * self.history
        self.history = window
        priority = (self.loss_sum / self.count) / self.initial_losses
        C, n = arbitrate((window @ window.T).double().cpu(), priority, cfg.threshold)
        T = C.shape[0]
        self.conflict_rate = n / max(T * (T - 1) / 2, 1)
        self.last_weights = C.sum(0).float().to(self.last_weights.device)
        self.accumulated = None
        self.loss_sum.zero_()
        self.count.zero_()

    def diagnostics(self) -> dict[str, float]:
        return {"conflict_rate": self.conflict_rate}
