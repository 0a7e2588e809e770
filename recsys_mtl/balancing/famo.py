"""FAMO: fast adaptive multitask optimization (Liu et al., NeurIPS 2023)."""

from __future__ import annotations

from typing import Sequence

import torch
from pydantic import Field
from torch import Tensor

from recsys_mtl.balancing.base import BALANCERS, Balancer, BalancerConfig, StepContext
from recsys_mtl.balancing.tiny_adam import TinyAdam


class FAMOConfig(BalancerConfig):
    lr: float = Field(0.025, gt=0)
    """learning rate of the task logits ξ (paper: 0.025)"""
    gamma: float = Field(0.001, ge=0)
    """weight decay γ on ξ (paper: 0.001)"""
    min_loss: float = 0.0
    """lower bound of each loss (0 for log loss / squared error)"""


@BALANCERS.register("famo")
class FAMO(Balancer):
    """Descends ``Σ_t z_t·log(L_t − m_t)`` with ``z = softmax(ξ)``, i.e. weights
    ``w_t ∝ z_t / (L_t − m_t)``, using one backward pass. ξ moves to equalise the tasks'
    log-loss decrease: after each optimizer step the training loop re-evaluates the *same* batch
    (``post_step = "same_batch"``, as the authors' code does, in training mode and without
    gradients) and ``ξ ← Adam(ξ, J_softmaxᵀ·δ)`` with ``δ_t = log(L_t(before) − m_t) −
    log(L_t(after) − m_t)``, Adam with weight decay γ (the reference's optimiser for ξ).

    Deviations from Cranial-XIX/FAMO: the weights are scaled to sum to T (the reference's sum to
    1) so the step size matches equal weighting's Σ L_t; the surrogate's *value* is Σ w_t L_t
    (same gradient as the reference's Σ z_t log L_t / c), for the logs. The re-evaluation costs
    one extra forward per step and, in models with BatchNorm, one extra update of the running
    statistics. Logs w_t."""

    Config = FAMOConfig
    post_step = "same_batch"

    def __init__(self, task_names: Sequence[str], config: FAMOConfig):
        super().__init__(task_names, config)
        T = len(task_names)
        self.register_buffer("logits", torch.zeros(T))
        self.register_buffer("prev_loss", torch.zeros(T))
        self.register_buffer("has_prev", torch.zeros((), dtype=torch.bool))
        self.adam = TinyAdam(T, config.lr, weight_decay=config.gamma)

    def _log(self, losses: Tensor) -> Tensor:
        cfg: FAMOConfig = self.config  # type: ignore[assignment]
        return (losses.detach().float().to(self.logits.device) - cfg.min_loss + 1e-8).clamp_min(1e-8).log()

    def combine(self, losses: Tensor, ctx: StepContext) -> Tensor:
        log_loss = self._log(losses)
        self.prev_loss.copy_(log_loss)
        self.has_prev.fill_(True)
        z = torch.softmax(self.logits, 0)
        w = z / log_loss.exp()
        w = w * len(w) / w.sum()
        self.last_weights = w
        # same gradient as T·Σ (z_t/c)·log L_t, but the value stays Σ w_t L_t for the logs
        return (w.to(losses) * losses).sum()

    def after_step(self, losses: Tensor, step: int) -> None:
        """(T,) losses of the step's batch after the update."""
        if bool(self.has_prev):
            self._update(self.prev_loss - self._log(losses))
            self.has_prev.fill_(False)

    @torch.no_grad()
    def _update(self, delta: Tensor) -> None:
        z = torch.softmax(self.logits, 0)
        grad = z * (delta - (z * delta).sum())  # J_softmax(ξ)ᵀ · δ
        self.logits.copy_(self.adam.step(self.logits, grad))
