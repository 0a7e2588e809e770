"""AdaTT: Adaptive Task-to-Task Fusion Network (Li et al., Meta, KDD 2023).

Each level holds one *fusion unit* per task (and, in the general variant, a shared unit). A unit
owns ``task_experts`` (or ``shared_experts``) experts that read the unit's input. Unit u's output
fuses every expert of the level with a softmax gate on the unit's input and adds a residual: a
learned linear combination of the unit's own experts,

    out_u = Σ_j g_u(x_u)_j · E_j  +  Σ_{i ∈ own(u)} v_{u,i} · E_i.

The gate transfers knowledge between tasks adaptively; the residual keeps each task's own
signal whatever the gate does. Variants, as the paper names them:

- ``variant: sp`` (AdaTT-sp): task-specific fusion units only.
- ``variant: general`` (AdaTT): task units plus a shared fusion unit with ``shared_experts``
  experts, whose output feeds the next level's shared experts (the last level has none).

The naming follows the paper and Meta's reference code (``AdaTTSp``: task experts only;
``AdaTTWSharedExps``: with shared experts). Some summaries word AdaTT-sp as "task-specific + shared
fusion units": that is the ``general`` variant here, and both are available.

Choices left open, made here: the shared unit applies the same rule (gate over all + residual of
its own experts); residual weights v start at 1/``task_experts`` (the mean of the unit's
experts) and stay learnable even with one expert per unit; all levels use ``expert_hidden``.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from recsys_mtl.models.base import FlatInputModel, ModelConfig, ModelContext
from recsys_mtl.models.registry import register
from recsys_mtl.nn.blocks import Gate, ParallelExperts, mix


class AdaTTConfig(ModelConfig):
    variant: Literal["sp", "general"] = "sp"
    """`sp`: task units only (AdaTT-sp); `general`: plus a shared fusion unit"""
    num_levels: int = Field(2, ge=1)
    """fusion levels"""
    task_experts: int = Field(2, ge=1)
    """experts per task unit per level"""
    shared_experts: int = Field(2, ge=0)
    """experts of the shared unit per level (general variant only)"""
    expert_hidden: list[int] = Field(default_factory=lambda: [64], min_length=1)
    """expert MLP widths (last = expert output dim)"""

    @model_validator(mode="after")
    def _shared_needs_experts(self) -> "AdaTTConfig":
        if self.variant == "general" and self.shared_experts < 1:
            raise ValueError("variant 'general' needs shared_experts >= 1")
        return self


class FusionUnit(nn.Module):
    """Gate over all experts of the level + residual linear combination of the unit's own experts.

    ``forward(all_experts (B, E_all, H), own (B, n, H), x (B, d))`` → (B, H).
    """

    def __init__(self, in_dim: int, owners: list[str], name: str, num_own: int):
        super().__init__()
        self.gate = Gate(in_dim, len(owners), task=None if name == "shared" else name, owners=owners)
        self.residual = nn.Parameter(torch.full((num_own,), 1.0 / num_own))

    def forward(self, all_experts: Tensor, own: Tensor, x: Tensor) -> Tensor:
        return mix(all_experts, self.gate(x)) + torch.einsum("bnh,n->bh", own, self.residual)


class AdaTTLevel(nn.Module):
    """One level: units in order [task 0, …, task T-1, shared?].

    ``forward(inputs: U × (B, d))`` → U' × (B, H), where U' drops the shared unit on the last level.
    """

    def __init__(self, in_dim: int, task_names: Sequence[str], cfg: AdaTTConfig, last: bool):
        super().__init__()
        units = [(t, cfg.task_experts) for t in task_names]
        if cfg.variant == "general":
            units.append(("shared", cfg.shared_experts))
        self.experts = nn.ModuleList(
            [ParallelExperts(n, in_dim, cfg.expert_hidden, cfg.activation, cfg.dropout) for _, n in units]
        )
        owners = [name for name, n in units for _ in range(n)]
        fused = units if not last else units[: len(task_names)]  # nothing reads the last shared unit
        self.units = nn.ModuleList([FusionUnit(in_dim, owners, name, n) for name, n in fused])

    def forward(self, inputs: Sequence[Tensor]) -> list[Tensor]:
        own = [bank(x) for bank, x in zip(self.experts, inputs)]  # U × (B, n_u, H)
        all_experts = torch.cat(own, dim=1) if len(own) > 1 else own[0]
        return [unit(all_experts, o, x) for unit, o, x in zip(self.units, own, inputs)]


@register("adatt")
class AdaTT(FlatInputModel):
    """AdaTT: per-task fusion units (gate over all experts + residual of own experts), stacked.
    """

    Config = AdaTTConfig

    def __init__(self, context: ModelContext, config: AdaTTConfig):
        super().__init__(context, config)
        H = config.expert_hidden[-1]
        dims = [self.encoder.output_dim] + [H] * (config.num_levels - 1)
        self.levels = nn.ModuleList(
            [AdaTTLevel(d, self.task_names, config, last=i == len(dims) - 1) for i, d in enumerate(dims)]
        )
        self.num_units = len(self.task_names) + (config.variant == "general")
        self.build_towers([H] * len(self.task_names))

    def task_inputs(self, x: Tensor) -> list[Tensor]:
        h: list[Tensor] = [x] * self.num_units
        for level in self.levels:
            h = level(h)
        return h

    def shared_modules(self) -> list[nn.Module]:
        """Every expert bank of the last level, (B, n_u, H) each: each task's fusion gate reads
        all of them (as MMoE's gates read every expert); the residual of a task's own experts is
        the only task-specific path. Earlier levels feed them through the fusion units."""
        return list(self.levels[-1].experts)

    def shared_parameters(self) -> list[nn.Parameter]:
        """Every level's experts, plus the shared fusion units (general variant)."""
        n_tasks = len(self.task_names)
        return [
            p
            for level in self.levels
            for m in [*level.experts, *list(level.units)[n_tasks:]]
            for p in m.parameters()
        ]
