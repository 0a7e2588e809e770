"""OMoE and MMoE (Ma et al., KDD 2018): shared experts mixed by one gate (OMoE) or one gate per task (MMoE)."""

from __future__ import annotations

from pydantic import Field
from torch import Tensor

from recsys_mtl.errors import SpecError
from recsys_mtl.models.base import FlatInputModel, ModelConfig, ModelContext
from recsys_mtl.models.exclusivity import ExclusivityParams, allowed_mask, exclusive_owners
from recsys_mtl.models.registry import register
from recsys_mtl.nn.blocks import Gate, experts_and_gates, mix_each
from recsys_mtl.nn.expert_banks import ExpertTypeParams, build_experts
from torch import nn


class MoEConfig(ModelConfig, ExclusivityParams, ExpertTypeParams):
    num_experts: int = Field(8, ge=1)
    """shared experts"""
    expert_hidden: list[int] = Field(default_factory=lambda: [64], min_length=1)
    """expert MLP widths (last = expert output dim)"""


class _MixtureOfExperts(FlatInputModel):
    Config = MoEConfig
    gates_per_task: bool

    def __init__(self, context: ModelContext, config: MoEConfig):
        super().__init__(context, config)
        d = self.encoder.output_dim
        self.experts = build_experts(config, config.num_experts, d, config.expert_hidden, config.activation, config.dropout)
        n_gates = len(self.task_names) if self.gates_per_task else 1
        owners = exclusive_owners(config.num_experts, self.task_names, config.exclusivity, config.exclusivity_seed)
        if config.exclusivity > 0 and not self.gates_per_task:
            raise SpecError("model.params.exclusivity: needs one gate per task (use mmoe, not omoe)")
        masks = allowed_mask(owners, self.task_names, "exclusivity") if config.exclusivity > 0 else [None] * n_gates
        tasks = self.task_names if self.gates_per_task else [None]
        self.gates = nn.ModuleList([Gate(d, config.num_experts, m, task=t, owners=owners) for m, t in zip(masks, tasks)])
        self.build_towers([self.experts.out_dim] * len(self.task_names))

    def task_inputs(self, x: Tensor) -> list[Tensor]:
        experts, weights = experts_and_gates(self.experts, x, self.gates)  # (B, E, H), (B, E) each
        mixed = mix_each(experts, weights)  # T (B, H)
        return mixed if self.gates_per_task else mixed * len(self.task_names)

    def shared_module(self) -> nn.Module:
        return self.experts  # (B, E, H): what gradient balancing acts on


@register("mmoe")
class MMoE(_MixtureOfExperts):
    """Multi-gate Mixture-of-Experts: shared experts, one softmax gate per task, a tower per task.
    """

    gates_per_task = True


@register("omoe")
class OMoE(_MixtureOfExperts):
    """One-gate Mixture-of-Experts: as MMoE but every task reads the same gated mixture.

    Parameters as MMoE's; ``exclusivity`` masks experts out of the single gate.
    """

    gates_per_task = False
