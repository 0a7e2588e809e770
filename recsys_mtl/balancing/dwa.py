"""Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019)."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.distributed as dist
from pydantic import Field
from torch import Tensor

from recsys_mtl.balancing.base import BALANCERS, Balancer, BalancerConfig, StepContext
from recsys_mtl.balancing.gradients import distributed


class DWAConfig(BalancerConfig):
    temperature: float = Field(2.0, gt=0)
    """softmax temperature over the loss ratios (the paper uses 2); larger = closer to equal"""


@BALANCERS.register("dwa")
class DynamicWeightAverage(Balancer):
    """``w_t = T·softmax(r_t / temperature)``, ``r_t = L̄_t(e−1) / L̄_t(e−2)``: the ratio of the last
    two epochs' mean training losses, so a task whose loss falls slowly gains weight. Equal weights
    in the first two epochs. Logs w_t."""

    Config = DWAConfig

    def __init__(self, task_names: Sequence[str], config: DWAConfig):
        super().__init__(task_names, config)
        T = len(task_names)
        self.register_buffer("loss_sum", torch.zeros(T))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("history", torch.zeros(2, T))  # mean losses of epochs e−2, e−1
        self.register_buffer("epochs_seen", torch.zeros((), dtype=torch.long))
        self.register_buffer("epoch", torch.full((), -1, dtype=torch.long))
        self.register_buffer("last_weights", torch.ones(T))  # persistent: a resumed epoch keeps its weights

    def _roll(self, epoch: int) -> None:
        if int(self.steps) > 0:
            sums = self.loss_sum.clone()
            if distributed():
                dist.all_reduce(sums)
                sums /= dist.get_world_size()
            self.history = torch.stack([self.history[1], sums / self.steps])
            self.epochs_seen += 1
        self.loss_sum.zero_()
        self.steps.zero_()
        self.epoch.fill_(epoch)
        T = len(self.task_names)
        if int(self.epochs_seen) >= 2:
            ratio = self.history[1] / self.history[0].clamp_min(1e-12)
            self.last_weights = T * torch.softmax(ratio / self.config.temperature, dim=0)  # type: ignore[attr-defined]
        else:
            self.last_weights = torch.ones(T, device=self.loss_sum.device)

    def combine(self, losses: Tensor, ctx: StepContext) -> Tensor:
        if ctx.epoch != int(self.epoch):
            self._roll(ctx.epoch)
        self.loss_sum += losses.detach().float()
        self.steps += 1
        return (self.last_weights.to(losses) * losses).sum()
