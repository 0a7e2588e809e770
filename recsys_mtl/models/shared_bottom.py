"""Shared-Bottom (Caruana 1997): one shared MLP feeding every task tower."""

from __future__ import annotations

from pydantic import Field
from torch import Tensor

from recsys_mtl.models.base import FlatInputModel, ModelConfig, ModelContext
from recsys_mtl.models.registry import register
from recsys_mtl.nn.blocks import MLP


class SharedBottomConfig(ModelConfig):
    bottom_hidden: list[int] = Field(default_factory=lambda: [128, 64], min_length=1)
    """shared MLP widths"""


@register("shared_bottom")
class SharedBottom(FlatInputModel):
    """Shared-Bottom: one MLP every task reads, then a tower per task.
    """

    Config = SharedBottomConfig

    def __init__(self, context: ModelContext, config: SharedBottomConfig):
        super().__init__(context, config)
        self.bottom = MLP(self.encoder.output_dim, config.bottom_hidden, config.activation, config.dropout)
        self.build_towers([self.bottom.out_dim] * len(self.task_names))

    def task_inputs(self, x: Tensor) -> list[Tensor]:
        h = self.bottom(x)
        return [h] * len(self.task_names)

    def shared_module(self) -> MLP:
        return self.bottom  # (B, H): what gradient balancing acts on
