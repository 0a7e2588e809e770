"""Task-sparse scoring: a copy of a model that computes only what a chosen subset of tasks reads.

Two mechanisms, applied together:

- Graph level (every family): the ONNX export traces only the selected tasks' outputs, and
  ``torch.export`` drops every op those outputs do not depend on: the other tasks' towers and
  gates, and expert banks only the other tasks read (e.g. PLE's last-level task experts).
- Model level (families registered in :data:`PRUNERS`): experts that *are* wired into a selected
  task's computation but contribute exactly zero because every selected gate masks them out
  (HoME's hierarchy mask on its last level: other groups' and other tasks' experts) are removed
  from the expert concatenation and the gates are sliced to match. Masked experts get a softmax
  weight of exactly 0, so the remaining weights — and the outputs — are unchanged.

:func:`graph_stats` measures a graph (nodes, initializers, parameters, bytes) so the subset can
be compared with the full graph.
"""

from __future__ import annotations

import copy
from typing import Callable, Sequence

import onnx
import torch
from onnx import numpy_helper
from torch import Tensor, nn

from recsys_mtl.errors import SpecError
from recsys_mtl.models.base import MultiTaskModel
from recsys_mtl.models.home import HoME, HoMELevel
from recsys_mtl.nn.blocks import Gate, mix

#: model class → function(model copy, selected task names) → pruned model (same forward contract)
PRUNERS: dict[type[MultiTaskModel], Callable[[MultiTaskModel, Sequence[str]], MultiTaskModel]] = {}


def check_tasks(available: Sequence[str], tasks: Sequence[str]) -> list[str]:
    """Validate a task subset; returns it in the model's task order."""
    if not tasks:
        raise SpecError("--tasks: choose at least one task")
    unknown = [t for t in tasks if t not in available]
    if unknown:
        raise SpecError(f"--tasks: unknown task(s) {unknown} (tasks of this run: {', '.join(available)})")
    return [t for t in available if t in set(tasks)]


def subset_model(model: MultiTaskModel, tasks: Sequence[str]) -> MultiTaskModel:
    """A pruned deep copy of ``model`` for ``tasks`` (the original is untouched); outputs for the
    selected tasks are identical, outputs for the others are meaningless and must not be read."""
    pruned = copy.deepcopy(model).eval()
    for cls in type(model).__mro__:
        if cls in PRUNERS:
            return PRUNERS[cls](pruned, tasks)
    return pruned


def graph_stats(model: onnx.ModelProto) -> dict[str, int]:
    """Nodes, initializers, parameter count and serialized bytes of an ONNX model."""
    inits = model.graph.initializer
    return {
        "nodes": len(model.graph.node),
        "initializers": len(inits),
        "parameters": int(sum(numpy_helper.to_array(i).size for i in inits)),
        "bytes": model.ByteSize(),
    }


# ---------------------------------------------------------------------- HoME
def _slice_gate(gate: Gate, keep: Tensor) -> Gate:
    """A gate over only the experts at index ``keep`` (1-D long)."""
    allowed = torch.isfinite(gate.log_mask[keep]) if gate.log_mask is not None else None
    owners = [gate.owners[i] for i in keep.tolist()] if gate.owners else None
    out = Gate(gate.proj.in_features, len(keep), allowed if allowed is not None and not bool(allowed.all()) else None,
               task=gate.task, owners=owners)
    with torch.no_grad():
        out.proj.weight.copy_(gate.proj.weight[keep])
        out.proj.bias.copy_(gate.proj.bias[keep])
    return out


class _PrunedHoMELast(nn.Module):
    """HoME's last level restricted to the expert banks some selected task's gate can see.

    Same call signature as :class:`HoMELevel`; unselected tasks get a (B, H) zero placeholder
    (their towers are traced on it and then dropped from the graph as dead code).
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
        self.gates = nn.ModuleList([_slice_gate(level.task_gates[t], keep) for t in selected])
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


def _prune_home(model: MultiTaskModel, tasks: Sequence[str]) -> MultiTaskModel:
    assert isinstance(model, HoME)
    selected = [model.task_names.index(t) for t in tasks]
    last = model.levels[-1]
    model.levels[-1] = _PrunedHoMELast(last, selected, model.config.expert_hidden[-1])  # type: ignore[arg-type]
    return model


PRUNERS[HoME] = _prune_home
