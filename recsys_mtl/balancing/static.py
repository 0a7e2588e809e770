"""Equal and static (hand-set) task weights."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from recsys_mtl.balancing.base import BALANCERS, Balancer, BalancerConfig, StepContext
from recsys_mtl.errors import SpecError


@BALANCERS.register("equal")
class EqualWeights(Balancer):
    """Sum of task losses (each already scaled by its spec ``weight``)."""

    constant_weights = True

    def combine(self, losses: Tensor, ctx: StepContext) -> Tensor:
        return losses.sum()


class StaticConfig(BalancerConfig):
    weights: dict[str, float]
    """a weight per task name (every task, no others)"""


@BALANCERS.register("static")
class StaticWeights(Balancer):
    """Fixed per-task weights from the pipeline: ``params: {weights: {income: 1.0, marital: 0.5}}``."""

    Config = StaticConfig
    constant_weights = True

    def __init__(self, task_names: Sequence[str], config: StaticConfig):
        super().__init__(task_names, config)
        unknown = set(config.weights) - set(task_names)
        missing = set(task_names) - set(config.weights)
        if unknown or missing:
            raise SpecError(f"balancing.params.weights: unknown tasks {sorted(unknown)}, missing tasks {sorted(missing)}")
        if any(w < 0 for w in config.weights.values()):
            raise SpecError("balancing.params.weights: weights must be >= 0")
        self.last_weights = torch.tensor([config.weights[n] for n in task_names])

    def combine(self, losses: Tensor, ctx: StepContext) -> Tensor:
        return (losses * self.last_weights.to(losses.dtype)).sum()
