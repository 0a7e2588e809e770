"""PLE / CGC (Tang et al., RecSys 2020): task-specific + shared experts per extraction level.

One Customized Gate Control (CGC) level holds, for every task, its own experts, plus a set of
shared experts. Each task's gate mixes its own and the shared experts; a shared gate mixes *all*
experts of the level and feeds the shared experts of the next level. Stacking levels gives
Progressive Layered Extraction (PLE); the last level has no shared gate (nothing reads it).

Choices the paper leaves open: every level uses the same expert widths (``expert_hidden``), and
a task's level-(l+1) experts and gate read that task's level-l output, as in the paper's figure.
"""

from __future__ import annotations

from typing import Sequence

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from recsys_mtl.models.base import FlatInputModel, ModelConfig, ModelContext
from recsys_mtl.models.exclusivity import ExclusivityParams, allowed_mask, exclusive_owners
from recsys_mtl.models.registry import register
from recsys_mtl.nn.blocks import Gate, experts_and_gates, mix
from recsys_mtl.nn.expert_banks import ExpertTypeParams, build_experts


class PLEConfig(ModelConfig, ExclusivityParams, ExpertTypeParams):
    num_levels: int = Field(2, ge=1)
    """extraction levels (1 = CGC)"""
    task_experts: int = Field(2, ge=0)
    """experts per task per level"""
    shared_experts: int = Field(2, ge=0)
    """shared experts per level"""
    expert_hidden: list[int] = Field(default_factory=lambda: [64], min_length=1)
    """expert MLP widths (last = expert output dim), same at every level"""

    @model_validator(mode="after")
    def _some_experts(self) -> "PLEConfig":
        if self.task_experts + self.shared_experts < 1:
            raise ValueError("task_experts + shared_experts must be at least 1")
        return self


class CGCConfig(PLEConfig):
    num_levels: int = Field(1, ge=1, le=1)
    """extraction levels: always 1 (CGC is PLE's single level)"""


def _cat(parts: Sequence[Tensor]) -> Tensor:
    """Concatenate (B, E_i, H) expert outputs along the expert axis."""
    return parts[0] if len(parts) == 1 else torch.cat(list(parts), dim=1)


class CGCLevel(nn.Module):
    """One extraction level.

    ``forward(task_inputs: T × (B, in_dim), shared_input: (B, in_dim))`` →
    ``(T × (B, H), (B, H) or None)`` where H = ``expert_hidden[-1]``; the shared output is None on
    the last level. Task t's gate weights [own experts of t | shared experts] (shared experts
    exclusive to another task are masked out, MMoEEx); the shared gate weights
    [experts of task 0 | … | experts of task T-1 | shared experts].
    """

    def __init__(self, in_dim: int, task_names: Sequence[str], cfg: PLEConfig, last: bool):
        super().__init__()
        n_t, n_s = cfg.task_experts, cfg.shared_experts
        bank = lambda n: build_experts(cfg, n, in_dim, cfg.expert_hidden, cfg.activation, cfg.dropout)  # noqa: E731
        self.task_experts = nn.ModuleList([bank(n_t) for _ in task_names]) if n_t else None
        self.shared_experts = bank(n_s) if n_s else None
        self.out_dim = cfg.expert_hidden[-1]

        shared_owners = exclusive_owners(n_s, task_names, cfg.exclusivity, cfg.exclusivity_seed)
        # exclusivity only restricts the shared experts; own experts are always visible
        excl = allowed_mask(shared_owners, task_names, "exclusivity") if cfg.exclusivity > 0 and n_s else None
        self.task_gates = nn.ModuleList()
        for t, name in enumerate(task_names):
            allowed = torch.cat([torch.ones(n_t, dtype=torch.bool), excl[t]]) if excl is not None else None
            self.task_gates.append(Gate(in_dim, n_t + n_s, allowed, task=name, owners=[name] * n_t + shared_owners))
        self.shared_gate: Gate | None = None
        if not last:
            all_owners = [o for name in task_names for o in [name] * n_t] + shared_owners
            self.shared_gate = Gate(in_dim, len(all_owners), owners=all_owners)

    def forward(self, task_inputs: Sequence[Tensor], shared_input: Tensor) -> tuple[list[Tensor], Tensor | None]:
        # each gate rides the first GEMM of the bank that reads its input (task t's gate with task
        # t's experts, the shared gate with the shared experts); without such a bank it runs alone
        own: list[Tensor] = []
        weights: list[Tensor] = []
        for t, x in enumerate(task_inputs):
            if self.task_experts is not None:
                experts, (w,) = experts_and_gates(self.task_experts[t], x, [self.task_gates[t]])
                own.append(experts)
            else:
                w = self.task_gates[t](x)
            weights.append(w)
        shared: list[Tensor] = []
        shared_w = None
        if self.shared_experts is not None:
            experts, gate_w = experts_and_gates(self.shared_experts, shared_input, [self.shared_gate] if self.shared_gate is not None else [])
            shared.append(experts)
            shared_w = gate_w[0] if gate_w else None
        elif self.shared_gate is not None:
            shared_w = self.shared_gate(shared_input)
        outs = [mix(_cat(([own[t]] if own else []) + shared), w) for t, w in enumerate(weights)]  # (B, n_t + n_s, H) mixed
        shared_out = mix(_cat(own + shared), shared_w) if shared_w is not None else None
        return outs, shared_out


@register("ple")
class PLE(FlatInputModel):
    """Progressive Layered Extraction: ``num_levels`` stacked CGC levels, then a tower per task.
    """

    Config = PLEConfig

    def __init__(self, context: ModelContext, config: PLEConfig):
        super().__init__(context, config)
        dims = [self.encoder.output_dim] + [config.expert_hidden[-1]] * (config.num_levels - 1)
        self.levels = nn.ModuleList(
            [CGCLevel(d, self.task_names, config, last=i == config.num_levels - 1) for i, d in enumerate(dims)]
        )
        self.build_towers([config.expert_hidden[-1]] * len(self.task_names))

    def task_inputs(self, x: Tensor) -> list[Tensor]:
        task_in: list[Tensor] = [x] * len(self.task_names)
        shared_in: Tensor | None = x
        for level in self.levels:
            assert shared_in is not None  # only the last level returns None
            task_in, shared_in = level(task_in, shared_in)
        return task_in

    def shared_modules(self) -> list[nn.Module]:
        """The last level's shared experts, (B, n_s, H): the last block every task gate reads.
        Earlier levels' shared experts feed it through the shared gates. Without shared experts
        the encoder is the only shared block."""
        last = self.levels[-1].shared_experts
        return [last] if last is not None else [self.encoder]

    def shared_parameters(self) -> list[nn.Parameter]:
        """Every level's shared experts and shared gate (the encoder's when there are none)."""
        params = [
            p for level in self.levels for m in (level.shared_experts, level.shared_gate) if m is not None for p in m.parameters()
        ]
        return params or list(self.encoder.parameters())


@register("cgc")
class CGC(PLE):
    """Customized Gate Control: PLE with a single extraction level (same parameters, num_levels = 1)."""

    Config = CGCConfig
