"""GradNorm (Chen et al., ICML 2018): weights that equalise the tasks' training rates."""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from pydantic import Field
from torch import Tensor

from recsys_mtl.balancing.base import BALANCERS, Balancer, BalancerConfig, StepContext
from recsys_mtl.balancing.gradients import global_gram, task_gradients
from recsys_mtl.balancing.tiny_adam import TinyAdam


class GradNormConfig(BalancerConfig):
    alpha: float = Field(1.5, ge=0)
    """restoring force towards equal training rates (paper: 0.12–3; 1.5 a common choice)"""
    lr: float = Field(0.025, gt=0)
    """learning rate of the weights (their own Adam, separate from the model's optimizer)"""
    on: Literal["representation", "shared_parameters", "last_shared_layer"] = "representation"
    """where gradient norms are measured: the shared representation, all shared parameters, or the weight of the last shared layer
    (the paper's W: the last ≥2-D shared parameter)
    """


@BALANCERS.register("gradnorm")
class GradNorm(Balancer):
    """Loss weights ``w_t`` (renormalised to sum T) trained so each weighted gradient norm
    ``w_t·‖∇L_t‖`` tracks ``mean_s(w_s‖∇L_s‖)·r_t^α``, with ``r_t`` the task's loss ratio
    ``L_t/L_t(0)`` relative to the mean ratio: a task that trains slowly gains weight.
    Logs w_t."""

    Config = GradNormConfig

    def __init__(self, task_names: Sequence[str], config: GradNormConfig):
        super().__init__(task_names, config)
        T = len(task_names)
        self.register_buffer("weights", torch.ones(T))
        self.register_buffer("initial_losses", torch.zeros(T))
        self.adam = TinyAdam(T, config.lr)

    def _targets(self, ctx: StepContext) -> tuple[list[Tensor], bool]:
        cfg: GradNormConfig = self.config  # type: ignore[assignment]
        if cfg.on != "last_shared_layer":
            return ctx.gradient_targets(cfg.on)
        matrices = [p for p in ctx.shared_params if p.ndim >= 2 and p.requires_grad]
        if not matrices:
            raise RuntimeError("gradnorm on=last_shared_layer: the shared module has no weight matrix")
        return [matrices[-1]], False

    @torch.no_grad()
    def update_weights(self, grad_norms: Tensor, losses: Tensor) -> None:
        """One step on ``Σ_t |w_t·n_t − target_t|`` (targets held constant, as in the paper).

        grad_norms: (T,) ‖∇L_t‖ of the unweighted losses; losses: (T,) current losses.
        """
        cfg: GradNormConfig = self.config  # type: ignore[assignment]
        n = grad_norms.float().to(self.weights.device)
        losses = losses.float().to(self.weights.device)
        if bool((self.initial_losses == 0).all()):
            self.initial_losses.copy_(losses.clamp_min(1e-12))
        ratio = losses / self.initial_losses
        rate = ratio / ratio.mean().clamp_min(1e-12)
        weighted = self.weights * n
        target = weighted.mean() * rate.pow(cfg.alpha)
        grad = torch.sign(weighted - target) * n
        w = self.adam.step(self.weights, grad).clamp_min(1e-4)
        self.weights.copy_(w * len(w) / w.sum())

    def combine(self, losses: Tensor, ctx: StepContext) -> Tensor:
        targets, per_sample = self._targets(ctx)
        K = global_gram(task_gradients(losses, targets), per_sample)
        weights = self.weights.clone()
        self.last_weights = weights
        self.update_weights(K.diagonal().clamp_min(0).sqrt(), losses.detach())
        return (weights.to(losses) * losses).sum()
