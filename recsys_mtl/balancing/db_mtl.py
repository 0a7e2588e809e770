"""DB-MTL: dual-balancing multi-task learning (Lin et al., 2023, arXiv 2308.12029).

Reference code: LibMTL's ``DB_MTL`` (by the paper's authors). Two balancing steps:

- loss scale: every task loss is log-transformed, L_t → log(L_t + ε), so tasks on different loss
  scales contribute gradients ∇L_t / L_t (the towers are trained on these log losses too);
- gradient magnitude: an exponential moving average of each task's shared-parameter gradient,
  ``b_t ← g_t + β_k (b_t − g_t)`` with β_k = β / k^σ at step k (b_t = 0 before the first step),
  and every b_t rescaled to the largest norm: ``d = Σ_t (max_s ‖b_s‖ / ‖b_t‖) b_t``.

Defaults are the reference's: β = 0.9, σ = 0 (LibMTL's ``DB_beta``, ``DB_beta_sigma``), ε = 1e-8.

Deviations:

- the value returned (and logged as the training loss) is Σ_t L_t; only its gradient is the log
  losses' (the reference returns nothing, calling backward itself);
- when the model has no dense shared parameter, the shared representation is used and the
  moving average is skipped (rows differ between batches); the reference refuses that case;
- a task with a zero averaged gradient gets weight 0 instead of the reference's 1/(0 + 1e-8);
- logged weights are the magnitude factors max‖b‖/‖b_t‖ (the 1/L_t of the log transform is not in them).
"""

from __future__ import annotations

from typing import Sequence

import torch
from pydantic import Field
from torch import Tensor

from recsys_mtl.balancing.base import BALANCERS, Balancer, BalancerConfig, StepContext
from recsys_mtl.balancing.gradients import global_gram, redirect, task_gradients


class DBMTLConfig(BalancerConfig):
    beta: float = Field(0.9, ge=0, lt=1)
    """moving-average coefficient β of the task gradients (0 = current gradients only)"""
    beta_sigma: float = Field(0.0, ge=0)
    """decay σ of the coefficient over steps, β_k = β / k^σ"""
    eps: float = Field(1e-8, gt=0)
    """ε inside log(L + ε)"""


def magnitude_weights(norms: Tensor) -> Tensor:
    """(T,) gradient norms → (T,) factors ``max(norms)/norms`` (0 where a norm is 0)."""
    top = norms.max()
    return torch.where(norms > 0, top / norms.clamp_min(1e-30), torch.zeros_like(norms))


@BALANCERS.register("db_mtl")
class DBMTL(Balancer):
    """Log-transformed losses and max-norm-equalised moving-average gradients on the shared parameters."""

    Config = DBMTLConfig

    def __init__(self, task_names: Sequence[str], config: DBMTLConfig):
        super().__init__(task_names, config)
        self.register_history("grad_buffer", torch.zeros(0))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def combine(self, losses: Tensor, ctx: StepContext) -> Tensor:
        cfg: DBMTLConfig = self.config  # type: ignore[assignment]
        log_losses = torch.log(losses + cfg.eps)
        targets, per_sample = ctx.gradient_targets("shared_parameters")
        G = task_gradients(log_losses, targets)
        K = global_gram(G, per_sample)  # averages G over ranks for parameter targets
        if per_sample:
            buffer, norms = G, K.diagonal().clamp_min(0).sqrt().float().to(G.device)
        else:
            self.steps += 1
            if self.grad_buffer.shape != G.shape:
                self.grad_buffer = torch.zeros_like(G)
            beta_k = cfg.beta / float(self.steps) ** cfg.beta_sigma
            self.grad_buffer = G + beta_k * (self.grad_buffer.to(G.device) - G)
            buffer = self.grad_buffer
            norms = buffer.norm(dim=1)
        alpha = magnitude_weights(norms)
        self.last_weights = alpha.detach().float()
        surrogate = redirect(log_losses, targets, G, alpha.to(buffer.dtype) @ buffer)
        # value Σ L_t (comparable with the other strategies' logs), gradient of the log losses
        return surrogate + (losses.sum() - log_losses.sum()).detach()
