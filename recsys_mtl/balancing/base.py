"""The balancing interface: per-task losses in, one scalar to back-propagate out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from recsys_mtl.registry import Registry


class BalancerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class StepContext:
    """What a strategy may look at in a training step besides the losses."""

    step: int
    epoch: int
    #: the model, for strategies that need gradients of shared parameters
    model: nn.Module | None = None


class Balancer(nn.Module, ABC):
    """Combines the (T,) vector of task losses into the scalar the optimizer minimises.

    A strategy may own learnable parameters (they join the optimizer, being a submodule of the
    LightningModule) and may react to validation losses (:meth:`on_validation_end`).
    :attr:`last_weights` holds the effective per-task weights of the latest step, for logging.
    """

    Config: ClassVar[type[BalancerConfig]] = BalancerConfig

    def __init__(self, task_names: Sequence[str], config: BalancerConfig):
        super().__init__()
        self.task_names = list(task_names)
        self.config = config
        self.register_buffer("last_weights", torch.ones(len(self.task_names)), persistent=False)

    @abstractmethod
    def combine(self, losses: Tensor, ctx: StepContext) -> Tensor:
        """(T,) task losses → scalar loss."""

    def on_validation_end(self, val_losses: Tensor, epoch: int) -> None:
        """Hook for strategies driven by validation loss (DWA, CoBa); (T,) mean losses."""

    def weight_dict(self) -> dict[str, float]:
        return {n: float(w) for n, w in zip(self.task_names, self.last_weights)}


BALANCERS: Registry[Balancer] = Registry("balancing method", "balancing")


def build_balancer(name: str, params: dict[str, Any], task_names: Sequence[str]) -> Balancer:
    return BALANCERS.get(name)(task_names, BALANCERS.config(name, params))  # type: ignore[call-arg]
