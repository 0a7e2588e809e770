"""Uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from recsys_mtl.balancing.base import BALANCERS, Balancer, BalancerConfig, StepContext


class UncertaintyConfig(BalancerConfig):
    init_log_var: float = 0.0
    """initial s_t = log σ_t²"""


@BALANCERS.register("uncertainty")
class UncertaintyWeighting(Balancer):
    """``L = Σ_t exp(−s_t)·L_t + s_t`` with learnable ``s_t = log σ_t²`` (the standard form).

    For a fixed loss the optimum is ``s_t = log L_t`` (weight ``1/L_t``). Logs ``exp(−s_t)``.
    """

    Config = UncertaintyConfig

    def __init__(self, task_names: Sequence[str], config: UncertaintyConfig):
        super().__init__(task_names, config)
        self.log_vars = nn.Parameter(torch.full((len(task_names),), float(config.init_log_var)))

    def combine(self, losses: Tensor, ctx: StepContext) -> Tensor:
        s = self.log_vars.float()
        weights = torch.exp(-s)
        self.last_weights = weights.detach()
        return (weights * losses + s).sum()
