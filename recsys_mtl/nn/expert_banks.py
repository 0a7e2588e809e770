"""Expert banks by type: what an MoE model's ``expert_type`` picks.

Every bank maps (B, in_dim) → (B, E, H) and exposes ``out_dim``, ``num_experts`` and
``last_output`` (read by :mod:`recsys_mtl.diagnostics`).
"""

from __future__ import annotations

from typing import Callable, Literal, Sequence

from pydantic import Field
from torch import nn

from recsys_mtl.nn.blocks import ParallelExperts
from recsys_mtl.nn.cross_network import CrossConfig, CrossExperts
from recsys_mtl.strict import ParamsModel


class ExpertTypeParams(ParamsModel):
    """Mixed into MoE model configs: which expert bank, and the cross experts' shape."""

    expert_type: Literal["mlp", "cross"] = "mlp"
    """`mlp`: MLP experts; `cross`: every expert is a DCN-v2 cross network followed by its MLP"""
    expert_cross: CrossConfig = Field(default_factory=CrossConfig)
    """the cross experts' network (see nn/cross_network.py)"""


Builder = Callable[[int, int, Sequence[int], str, float, CrossConfig], nn.Module]

EXPERT_BANKS: dict[str, Builder] = {
    "mlp": lambda n, d, hidden, act, drop, cross: ParallelExperts(n, d, hidden, act, drop),
    "cross": lambda n, d, hidden, act, drop, cross: CrossExperts(n, d, hidden, act, drop, cross),
}


def build_experts(cfg: ExpertTypeParams, num_experts: int, in_dim: int, hidden: Sequence[int], act: str, dropout: float) -> nn.Module:
    return EXPERT_BANKS[cfg.expert_type](num_experts, in_dim, hidden, act, dropout, cfg.expert_cross)
