"""FAMO: fast adaptive multitask optimization (Liu et al., NeurIPS 2023)."""

from __future__ import annotations

from typing import Sequence

import torch
from pydantic import Field
from torch import Tensor

from recsys_mtl.balancing.base import BALANCERS, Balancer, BalancerConfig, StepContext
from recsys_mtl.balancing.optim import TinyAdam


class FAMOConfig(BalancerConfig):
    #: learning rate of the task logits ξ (paper: 0.025)
    lr: float = Field(0.025, gt=0)
    #: weight decay γ on ξ (paper: 0.001)
    gamma: float = Field(0.001, ge=0)
    #: lower bound of each loss (0 for log loss / squared error)
    min_loss: float = 0.0


@BALANCERS.register("famo")
class FAMO(Balancer):
    """Descends ``Σ_t z_t·log(L_t − m_t)`` with ``z = softmax(ξ)``, i.e. weights
    ``w_t ∝ z_t / (L_t − m_t)`` (sum scale: Σ w = T), using one backward pass. ξ moves to equalise
    the tasks' log-loss decrease: after each step ``ξ ← Adam(ξ, J_softmaxᵀ·δ)``, where
    ``δ_t = log L_t(before) − log L_t(after)``. As the paper's O(1) variant we read "after" from the
    next batch's losses (no extra forward). Logs w_t."""

    Config = FAMOConfig

    def __init__(self, task_names: Sequence[str], config: FAMOConfig):
        super().__init__(task_names, config)
        T = len(task_names)
        self.register_buffer("logits", torch.zeros(T))
        self.register_buffer("prev_log_loss", torch.zeros(T))
        self.register_buffer("has_prev", torch.zeros((), dtype=torch.bool))
        self.adam = TinyAdam(T, config.lr, weight_decay=config.gamma)

    def combine(self, losses: Tensor, ctx: StepContext) -> Tensor:
        cfg: FAMOConfig = self.config  # type: ignore[assignment]
        log_loss = (losses.detach().float() - cfg.min_loss).clamp_min(1e-8).log()
        if bool(self.has_prev):
            self._update(self.prev_log_loss - log_loss)
        self.prev_log_loss.copy_(log_loss)
        self.has_prev.fill_(True)
        z = torch.softmax(self.logits, 0)
        w = z / log_loss.exp()
        w = w * len(w) / w.sum()
        self.last_weights = w
        # same gradient as T·Σ (z_t/c)·log L_t, but the value stays Σ w_t L_t for the logs
        return (w.to(losses) * losses).sum()

    @torch.no_grad()
    def _update(self, delta: Tensor) -> None:
        z = torch.softmax(self.logits, 0)
        grad = z * (delta - (z * delta).sum())  # J_softmax(ξ)ᵀ · δ
        self.logits.copy_(self.adam.step(self.logits, grad))
