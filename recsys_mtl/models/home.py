"""HoME: Hierarchy of Multi-Gate Experts (Wang et al., Kuaishou, 2024).

HoME keeps the MMoE/PLE skeleton (experts mixed by per-task softmax gates) and adds four fixes
for the anomalies it reports on production MoE models; each is switchable for ablation:

- ``expert_norm``: each expert's last layer is batch-normalised and passed through Swish, so all
  experts' outputs share one distribution (against *expert collapse*: ReLU experts with >90%
  zero activations that gates cannot weigh fairly). Off: the last layer uses ``activation``.
- ``hierarchy_mask``: experts come in three tiers — global shared experts, experts shared within
  a task group (``groups``, e.g. ``{engage: [like, comment]}``), and task experts. Task t's gate
  only sees global + its group's + its own experts (against *expert degradation*: shared experts
  captured by one task). Off: every gate sees every expert of its level.
- ``feature_gate``: each expert reads its own rescaling of the input, ``x ⊙ 2·σ(x A_e B_e + b_e)``
  with a rank-``feature_gate_rank`` A_e B_e; the factor 2 centres the scale at 1.
- ``self_gate``: from the second level on, each representation adds a gated residual of its
  input, ``σ(W h) ⊙ h``, so deep hierarchies keep a direct gradient path and sparse tasks keep
  their own signal (against *expert underfitting*).

Choices the paper leaves open or ties to Kuaishou's setup, made here:
- The hierarchy is general over ``num_levels``: every level has the three tiers; a non-last
  level also emits one representation per group (its gate over global + group experts) and a
  global one (its gate over all experts), read by that tier's experts at the next level, as
  PLE's shared gate does. The paper's two-level "meta" layout is ``num_levels: 2`` with groups.
- Tasks listed in no group see global + own experts only.
- Feature-gate matrices are initialised small and random so the scale starts near 1 and every
  factor receives gradient from the first step.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from pydantic import Field
from torch import Tensor, nn

from recsys_mtl.errors import SpecError
from recsys_mtl.models.base import FlatInputModel, ModelConfig, ModelContext
from recsys_mtl.models.registry import register
from recsys_mtl.nn.blocks import Gate, activation, mix


class HoMEConfig(ModelConfig):
    num_levels: int = Field(2, ge=1)
    """expert levels"""
    global_experts: int = Field(2, ge=0)
    """experts shared by every task, per level"""
    group_experts: int = Field(1, ge=0)
    """experts per task group, per level"""
    task_experts: int = Field(1, ge=0)
    """experts per task, per level"""
    groups: dict[str, list[str]] = Field(default_factory=dict)
    """task groups: `{group name: [task names]}`; a task is in at most one group"""
    expert_hidden: list[int] = Field(default_factory=lambda: [64], min_length=1)
    """expert MLP widths (last = expert output dim)"""
    expert_norm: bool = True
    """BatchNorm + Swish on expert outputs (off: the last expert layer uses `activation`)"""
    hierarchy_mask: bool = True
    """task gates see only global + own group + own experts"""
    feature_gate: bool = True
    """per-expert input scaling 2·σ(low-rank MLP(x))"""
    feature_gate_rank: int = Field(8, ge=1)
    """rank of the feature-gate MLP"""
    self_gate: bool = True
    """gated residual from one level's output to the next (levels ≥ 2)"""


class HoMEExperts(nn.Module):
    """``num_experts`` MLP experts as batched einsums, with optional feature gates and normalisation.

    (B, in_dim) → (B, E, H), H = ``hidden[-1]``. Keeps ``last_output`` (B, E, H) for diagnostics.
    """

    def __init__(self, num_experts: int, in_dim: int, cfg: HoMEConfig):
        super().__init__()
        self.num_experts = num_experts
        self.out_dim = cfg.expert_hidden[-1]
        dims = [in_dim, *cfg.expert_hidden]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            bound = 1.0 / math.sqrt(d_in)  # nn.Linear's default scale, per expert
            self.weights.append(nn.Parameter(torch.empty(num_experts, d_in, d_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(num_experts, d_out).uniform_(-bound, bound)))
        self.act = activation(cfg.activation)
        self.dropout = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        self.feature_gate = cfg.feature_gate
        if cfg.feature_gate:
            r = cfg.feature_gate_rank
            self.fg_down = nn.Parameter(torch.randn(num_experts, in_dim, r) / math.sqrt(in_dim))
            self.fg_up = nn.Parameter(torch.randn(num_experts, r, in_dim) * 0.01)
            self.fg_bias = nn.Parameter(torch.zeros(num_experts, in_dim))
        # one BatchNorm over all experts' channels: per-channel statistics, i.e. per expert and unit
        self.norm = nn.BatchNorm1d(num_experts * self.out_dim) if cfg.expert_norm else None
        self.swish = nn.SiLU()
        self.last_output: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.feature_gate:
            low = _shared_input_matmul(x, self.fg_down)  # (B, E, r)
            scale = 2.0 * torch.sigmoid(torch.einsum("ber,eri->bei", low, self.fg_up) + self.fg_bias)
            h = torch.einsum("bei,eio->beo", x.unsqueeze(1) * scale, self.weights[0]) + self.biases[0]
        else:
            h = _shared_input_matmul(x, self.weights[0]) + self.biases[0]
        for w, b in zip(list(self.weights)[1:], list(self.biases)[1:]):
            h = torch.einsum("bei,eio->beo", self.dropout(self.act(h)), w) + b
        if self.norm is not None:
            h = self.swish(self.norm(h.flatten(1)).unflatten(1, (self.num_experts, self.out_dim)))
        else:
            h = self.act(h)
        h = self.dropout(h)
        self.last_output = h.detach()
        return h


def _shared_input_matmul(x: Tensor, w: Tensor) -> Tensor:
    """(B, i) x (E, i, o) → (B, E, o) as one GEMM (an einsum here lowers to a slower batched matmul on CPU)."""
    return (x @ w.permute(1, 0, 2).reshape(w.shape[1], -1)).view(x.shape[0], w.shape[0], w.shape[2])


class SelfGate(nn.Module):
    """Gated residual: (B, H) → (B, H), ``σ(W h) ⊙ h``."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, h: Tensor) -> Tensor:
        return torch.sigmoid(self.proj(h)) * h


class HoMELevel(nn.Module):
    """One level. Experts are concatenated as [global | group 0 | … | task 0 | …].

    ``forward(task_in: T × (B, d), group_in: G × (B, d), global_in: (B, d))`` →
    ``(T × (B, H), G × (B, H), (B, H) or None)``; group and global outputs are empty / None on the
    last level.
    """

    def __init__(
        self, in_dim: int, task_names: Sequence[str], groups: Sequence[str], group_of: dict[str, str], cfg: HoMEConfig, last: bool, residual: bool
    ):
        super().__init__()
        n_groups = len(groups)
        n_glob, n_grp, n_task = cfg.global_experts, cfg.group_experts, cfg.task_experts
        self.global_experts = HoMEExperts(n_glob, in_dim, cfg) if n_glob else None
        self.group_experts = nn.ModuleList([HoMEExperts(n_grp, in_dim, cfg) for _ in range(n_groups)]) if n_grp else None
        self.task_experts = nn.ModuleList([HoMEExperts(n_task, in_dim, cfg) for _ in task_names]) if n_task else None
        H = cfg.expert_hidden[-1]
        owners = ["shared"] * n_glob + [f"group:{g}" for g in groups for _ in range(n_grp)]
        owners += [t for t in task_names for _ in range(n_task)]
        n_all = len(owners)

        def gate(allowed: list[bool], task: str | None) -> Gate:
            mask = torch.tensor(allowed) if cfg.hierarchy_mask and not all(allowed) else None
            return Gate(in_dim, n_all, mask, task=task, owners=owners)

        self.task_gates = nn.ModuleList()
        for t in task_names:
            mine = {"shared", t} | ({f"group:{group_of[t]}"} if t in group_of else set())
            self.task_gates.append(gate([o in mine for o in owners], t))
        self.group_gates = nn.ModuleList()
        self.global_gate: Gate | None = None
        if not last:
            for g in groups:
                self.group_gates.append(gate([o in {"shared", f"group:{g}"} for o in owners], None))
            self.global_gate = gate([True] * n_all, None)
        n_streams = len(task_names) + (0 if last else n_groups + 1)
        self.self_gates = nn.ModuleList([SelfGate(H) for _ in range(n_streams)]) if residual else None

    def forward(
        self, task_in: Sequence[Tensor], group_in: Sequence[Tensor], global_in: Tensor
    ) -> tuple[list[Tensor], list[Tensor], Tensor | None]:
        parts = []
        if self.global_experts is not None:
            parts.append(self.global_experts(global_in))
        if self.group_experts is not None:
            parts += [bank(x) for bank, x in zip(self.group_experts, group_in)]
        if self.task_experts is not None:
            parts += [bank(x) for bank, x in zip(self.task_experts, task_in)]
        experts = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)  # (B, E_all, H)
        task_out = [mix(experts, g(x)) for g, x in zip(self.task_gates, task_in)]
        group_out = [mix(experts, g(x)) for g, x in zip(self.group_gates, group_in)]
        global_out = mix(experts, self.global_gate(global_in)) if self.global_gate is not None else None
        if self.self_gates is not None:
            inputs = [*task_in, *group_in, global_in][: len(self.self_gates)]
            outs = [*task_out, *group_out, *([global_out] if global_out is not None else [])]
            outs = [o + sg(h) for o, sg, h in zip(outs, self.self_gates, inputs)]
            task_out, group_out = outs[: len(task_out)], outs[len(task_out) : len(task_out) + len(group_out)]
            global_out = outs[-1] if global_out is not None else None
        return task_out, group_out, global_out


class HoMELastSubset(nn.Module):
    """HoME's last level restricted to the expert banks some selected task's gate can see: the
    level of a task-sparse export (:meth:`HoME.for_tasks`).

    Same call signature as :class:`HoMELevel`; unselected tasks get a (B, H) zero placeholder
    (their towers are traced on it and then dropped from the graph as dead code). Masked experts
    have a softmax weight of exactly 0, so dropping them leaves the selected outputs unchanged.
    """

    def __init__(self, level: HoMELevel, selected: list[int], out_dim: int):
        super().__init__()
        banks: list[tuple[str, int, nn.Module]] = []  # (stream kind, stream index, bank) in concat order
        if level.global_experts is not None:
            banks.append(("global", 0, level.global_experts))
        if level.group_experts is not None:
            banks += [("group", g, b) for g, b in enumerate(level.group_experts)]
        if level.task_experts is not None:
            banks += [("task", t, b) for t, b in enumerate(level.task_experts)]
        allowed = torch.zeros(sum(b.num_experts for _, _, b in banks), dtype=torch.bool)
        for t in selected:
            mask = level.task_gates[t].log_mask
            allowed |= torch.ones_like(allowed) if mask is None else torch.isfinite(mask)
        keep_idx, kept, start = [], [], 0
        for kind, i, bank in banks:
            span = range(start, start + bank.num_experts)
            start += bank.num_experts
            if bool(allowed[list(span)].any()):
                kept.append((kind, i))
                keep_idx += list(span)
                self.add_module(f"bank_{kind}_{i}", bank)
        self.kept = kept
        keep = torch.tensor(keep_idx, dtype=torch.long)
        self.selected = selected
        self.gates = nn.ModuleList([level.task_gates[t].keeping(keep) for t in selected])
        self.self_gates = nn.ModuleList([level.self_gates[t] for t in selected]) if level.self_gates is not None else None
        self.out_dim = out_dim

    def forward(self, task_in: Sequence[Tensor], group_in: Sequence[Tensor], global_in: Tensor) -> tuple[list[Tensor], list[Tensor], None]:
        streams = {"global": [global_in], "group": list(group_in), "task": list(task_in)}
        parts = [getattr(self, f"bank_{kind}_{i}")(streams[kind][i]) for kind, i in self.kept]
        experts = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)  # (B, E_kept, H)
        zero = global_in.new_zeros(global_in.shape[0], self.out_dim)
        out = [zero] * len(task_in)
        for j, t in enumerate(self.selected):
            h = mix(experts, self.gates[j](task_in[t]))
            if self.self_gates is not None:
                h = h + self.self_gates[j](task_in[t])
            out[t] = h
        return out, [], None


@register("home")
class HoME(FlatInputModel):
    """HoME: hierarchy of normalised, feature-gated experts with self-gated residuals.
    """

    Config = HoMEConfig

    def __init__(self, context: ModelContext, config: HoMEConfig):
        super().__init__(context, config)
        self.group_names = list(config.groups)
        group_of = self._check_groups(config)
        for t in self.task_names:
            if not (config.global_experts or config.task_experts or (t in group_of and config.group_experts)):
                raise SpecError(f"model.params: task {t!r} has no experts (needs global_experts, task_experts or a group)")
        H = config.expert_hidden[-1]
        dims = [self.encoder.output_dim] + [H] * (config.num_levels - 1)
        self.levels = nn.ModuleList(
            [
                HoMELevel(d, self.task_names, self.group_names, group_of, config, last=i == len(dims) - 1, residual=config.self_gate and i > 0)
                for i, d in enumerate(dims)
            ]
        )
        self.build_towers([H] * len(self.task_names))

    def _check_groups(self, config: HoMEConfig) -> dict[str, str]:
        group_of: dict[str, str] = {}
        for name, members in config.groups.items():
            for t in members:
                if t not in self.task_names:
                    raise SpecError(f"model.params.groups.{name}: unknown task {t!r} (tasks: {', '.join(self.task_names)})")
                if t in group_of:
                    raise SpecError(f"model.params.groups.{name}: task {t!r} is already in group {group_of[t]!r}")
                group_of[t] = name
        return group_of

    def task_inputs(self, x: Tensor) -> list[Tensor]:
        task_in: list[Tensor] = [x] * len(self.task_names)
        group_in: list[Tensor] = [x] * len(self.group_names)
        global_in: Tensor | None = x
        for level in self.levels:
            assert global_in is not None  # only the last level returns None
            task_in, group_in, global_in = level(task_in, group_in, global_in)
        return task_in

    @staticmethod
    def _shared_banks(level: HoMELevel) -> list[nn.Module]:
        banks: list[nn.Module] = [level.global_experts] if level.global_experts is not None else []
        return banks + (list(level.group_experts) if level.group_experts is not None else [])

    def shared_modules(self) -> list[nn.Module]:
        """The last level's global experts and each group's experts, (B, E, H) each: the blocks
        read by more than one task's gate (group experts by the tasks of their group). Earlier
        levels feed them through the global and group gates. Encoder when there are none."""
        return self._shared_banks(self.levels[-1]) or [self.encoder]

    def shared_parameters(self) -> list[nn.Parameter]:
        """Every level's global and group experts with their global and group gates."""
        params = []
        for level in self.levels:
            gates = [*level.group_gates, *([level.global_gate] if level.global_gate is not None else [])]
            params += [p for m in [*self._shared_banks(level), *gates] for p in m.parameters()]
        return params or list(self.encoder.parameters())

    def for_tasks(self, tasks: Sequence[str]) -> HoME:
        """The last level keeps only the experts some selected task's gate can see (the others'
        weight is exactly 0 under the hierarchy mask), with the gates sliced to match."""
        selected = [self.task_names.index(t) for t in tasks]
        self.levels[-1] = HoMELastSubset(self.levels[-1], selected, self.config.expert_hidden[-1])  # type: ignore[arg-type, attr-defined]
        return self
