"""Expert and gate statistics accumulated over batches, for any MoE model in recsys_mtl.

The statistics read what the blocks keep after each forward pass: expert banks (any module with
a (B, E, H) ``last_output``, e.g. :class:`~recsys_mtl.nn.blocks.ParallelExperts`) and gates
(:class:`~recsys_mtl.nn.blocks.Gate`, ``last_weights`` (B, E), with ``task`` and ``owners``
describing which task reads the gate and who owns each expert). They expose HoME's anomalies:

- expert collapse: per-expert share of zero / near-zero outputs, and output mean / std;
- expert degradation: a shared expert weighted by one task only (gate mean weights per task);
- expert underfitting: a task putting little weight on its own experts (usage own vs shared).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from recsys_mtl.nn.blocks import Gate

#: outputs with |x| at most this are counted as zero (exact zeros of ReLU, up to float noise)
ZERO_EPS = 1e-8


def expert_banks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules that keep a per-expert output tensor (``last_output`` attribute)."""
    return [(name, m) for name, m in model.named_modules() if hasattr(m, "last_output") and hasattr(m, "num_experts")]


def gates(model: nn.Module) -> list[tuple[str, Gate]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, Gate)]


def has_experts(model: nn.Module) -> bool:
    return bool(expert_banks(model) or gates(model))


def owner_kind(owner: str, task: str | None) -> str:
    """Which usage bucket an expert falls in from the point of view of ``task``'s gate."""
    if owner == "shared":
        return "shared"
    if owner.startswith("group:"):
        return "group"
    return "own" if owner == task else "other"


@dataclass
class _BankSums:
    rows: int = 0
    zero: Tensor | None = None  # (E,) sum over rows of each row's zero share
    near_zero: Tensor | None = None
    total: Tensor | None = None  # (E,) Σ x
    total_sq: Tensor | None = None  # (E,) Σ x²
    count: int = 0  # elements per expert seen


@dataclass
class _GateSums:
    rows: int = 0
    weight: Tensor | None = None  # (E,) Σ over rows
    entropy: float = 0.0
    max_weight: float = 0.0


def _add(a: Tensor | None, b: Tensor) -> Tensor:
    return b if a is None else a + b


@dataclass
class DiagnosticsAccumulator:
    """Call :meth:`update` after each forward pass of ``model``; :meth:`result` gives a JSON-able dict.

    ``near_zero`` is relative: |x| below ``near_zero`` × the bank's output std (over all its
    experts) counts as near-zero, so the measure means the same for ReLU and Swish experts.
    """

    model: nn.Module
    near_zero: float = 0.01
    banks: list[tuple[str, nn.Module]] = field(init=False)
    gate_list: list[tuple[str, Gate]] = field(init=False)

    def __post_init__(self) -> None:
        self.banks = expert_banks(self.model)
        self.gate_list = gates(self.model)
        self.reset()

    def reset(self) -> None:
        self._banks = {name: _BankSums() for name, _ in self.banks}
        self._gates = {name: _GateSums() for name, _ in self.gate_list}

    @torch.no_grad()
    def update(self) -> None:
        for name, bank in self.banks:
            out = bank.last_output
            if out is None or out.dim() != 3:
                continue
            out = out.float()
            s = self._banks[name]
            a = out.abs()
            scale = out.std().clamp_min(1e-12)
            s.zero = _add(s.zero, (a <= ZERO_EPS).float().mean(-1).sum(0).cpu())
            s.near_zero = _add(s.near_zero, (a <= self.near_zero * scale).float().mean(-1).sum(0).cpu())
            s.total = _add(s.total, out.sum((0, 2)).cpu())
            s.total_sq = _add(s.total_sq, out.pow(2).sum((0, 2)).cpu())
            s.rows += out.shape[0]
            s.count += out.shape[0] * out.shape[2]
        for name, gate in self.gate_list:
            w = gate.last_weights
            if w is None:
                continue
            w = w.float()
            g = self._gates[name]
            g.weight = _add(g.weight, w.sum(0).cpu())
            g.entropy += float(-(w * w.clamp_min(1e-12).log()).sum(-1).sum())
            g.max_weight += float(w.max(-1).values.sum())
            g.rows += w.shape[0]

    def result(self) -> dict[str, Any]:
        experts: dict[str, Any] = {}
        for name, s in self._banks.items():
            if not s.rows:
                continue
            mean = s.total / s.count
            std = (s.total_sq / s.count - mean.pow(2)).clamp_min(0).sqrt()
            experts[name] = {
                "zero_fraction": _r(s.zero / s.rows),
                "near_zero_fraction": _r(s.near_zero / s.rows),
                "mean": _r(mean),
                "std": _r(std),
            }
        gate_stats: dict[str, Any] = {}
        tasks: dict[str, dict[str, list[float]]] = {}
        for name, gate in self.gate_list:
            g = self._gates[name]
            if not g.rows:
                continue
            weight = g.weight / g.rows
            n_allowed = int((gate.log_mask == 0).sum()) if gate.log_mask is not None else weight.numel()
            entropy = g.entropy / g.rows
            entry: dict[str, Any] = {
                "task": gate.task,
                "owners": gate.owners,
                "mean_weight": _r(weight),
                "entropy": round(entropy, 6),
                # 1 = uniform over the experts the gate may use, 0 = one expert takes everything
                "normalized_entropy": round(entropy / math.log(n_allowed), 6) if n_allowed > 1 else 0.0,
                "mean_max_weight": round(g.max_weight / g.rows, 6),
            }
            if gate.owners is not None:
                usage = {"own": 0.0, "group": 0.0, "shared": 0.0, "other": 0.0}
                for owner, w in zip(gate.owners, weight.tolist()):
                    usage[owner_kind(owner, gate.task)] += w
                entry["usage"] = {k: round(v, 6) for k, v in usage.items()}
                if gate.task is not None:
                    per_task = tasks.setdefault(gate.task, {k: [] for k in ("own", "group", "shared", "other", "normalized_entropy")})
                    for k, v in usage.items():
                        per_task[k].append(v)
                    per_task["normalized_entropy"].append(entry["normalized_entropy"])
            gate_stats[name] = entry
        # a task may read several gates (one per level): report the mean over its gates
        task_summary = {t: {k: round(sum(v) / len(v), 6) for k, v in d.items()} for t, d in tasks.items()}
        rows = max([s.rows for s in self._banks.values()] + [g.rows for g in self._gates.values()] + [0])
        return {"rows": rows, "experts": experts, "gates": gate_stats, "tasks": task_summary}


def _r(t: Tensor) -> list[float]:
    return [round(float(v), 6) for v in t]


def scalar_summary(result: dict[str, Any]) -> dict[str, float]:
    """A few numbers per task and per bank, for the Lightning loggers (``diag/...``)."""
    out: dict[str, float] = {}
    for task, d in result["tasks"].items():
        for k in ("own", "shared", "group", "normalized_entropy"):
            out[f"diag/{task}/{k}"] = d[k]
    for name, e in result["experts"].items():
        out[f"diag/{name}/zero_fraction"] = sum(e["zero_fraction"]) / len(e["zero_fraction"])
    return out
