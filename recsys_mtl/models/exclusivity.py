"""MMoEEx-style expert exclusivity (Aoki et al., 2021): some experts are reserved for one task.

A share ``rate`` of the experts becomes *exclusive*: each is assigned to one task and masked out
of every other task's gate (its gate weight there is exactly 0). The remaining experts stay
shared. Choice left open by the paper: which experts and tasks pair up; here a seeded random
permutation of the experts is dealt round-robin over the tasks, so assignments are reproducible
from the config alone and spread evenly.
"""

from __future__ import annotations

from typing import Sequence

import torch
from pydantic import Field
from torch import Tensor

from recsys_mtl.errors import SpecError
from recsys_mtl.strict import ParamsModel


class ExclusivityParams(ParamsModel):
    """Mixed into a model Config to offer exclusivity."""

    exclusivity: float = Field(0.0, ge=0.0, le=1.0)
    """MMoEEx: share of the shared experts (in PLE, of each level's) made exclusive to one task, masked out of the other gates"""
    exclusivity_seed: int = 0
    """seed of the expert → task assignment"""


def exclusive_owners(num_experts: int, task_names: Sequence[str], rate: float, seed: int) -> list[str]:
    """One label per expert: the task it is exclusive to, or ``"shared"``."""
    n_exclusive = round(rate * num_experts)
    owners = ["shared"] * num_experts
    if n_exclusive == 0:
        return owners
    gen = torch.Generator().manual_seed(seed)
    experts = torch.randperm(num_experts, generator=gen)[:n_exclusive].tolist()
    for i, e in enumerate(experts):
        owners[e] = task_names[i % len(task_names)]
    return owners


def allowed_mask(owners: Sequence[str], task_names: Sequence[str], where: str) -> Tensor:
    """(T, E) bool: task t may weight expert e iff e is shared or exclusive to t."""
    mask = torch.tensor([[o == "shared" or o == t for o in owners] for t in task_names], dtype=torch.bool)
    empty = [t for t, row in zip(task_names, mask) if not bool(row.any())]
    if empty:
        raise SpecError(
            f"model.params.{where}: tasks {empty} are left with no expert "
            f"({len(owners)} experts, {len(task_names)} tasks); lower the rate or add experts"
        )
    return mask
