"""DCN-v2 cross networks (Wang et al., "DCN V2: Improved Deep & Cross Network and Practical
Lessons for Web-scale Learning to Rank Systems", WWW 2021): explicit, bounded-degree feature
crosses that an MLP learns only inefficiently.

One cross layer (paper eq. 1), with ``x_0`` the input and ``x_l`` the previous layer's output::

    x_{l+1} = x_0 ⊙ (W_l x_l + b_l) + x_l                      kind = "full"     (W_l: D × D)
    x_{l+1} = x_0 ⊙ (U_l (V_lᵀ x_l) + b_l) + x_l               kind = "low_rank" (U, V: D × r)
    x_{l+1} = Σ_i G_i(x_l) · x_0 ⊙ (U_li g(C_li g(V_liᵀ x_l)) + b_l) + x_l
                                                              kind = "mixture"  (DCN-Mix, eq. 3)

so ``L`` layers hold every feature cross up to degree ``L + 1`` and keep the width D. As in the
reference implementations (tensorflow-recommenders ``Cross``, DeepCTR ``CrossNetMix``): kernels
start Xavier-normal, biases at 0; DCN-Mix's ``g`` is tanh, its gate a softmax over per-expert
linear scores of ``x_l``, and the bias is shared by a layer's experts.

Where it sits here:

- :class:`CrossedEncoder`, the model param ``cross: {...}``: the stacked DCN-v2 structure with
  the cross network as the bottom between the encoder and any flat-input model (experts,
  shared bottom, funnels), which then plays the role of DCN's deep part.
- :class:`CrossExperts`, ``expert_type: cross`` in MMoE / OMoE / PLE / CGC: each expert is its
  own stacked DCN-v2 (cross network, then the expert MLP).
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import torch
from pydantic import Field
from torch import Tensor, nn

from recsys_mtl.data.preprocess import Layout
from recsys_mtl.data.tensors import Batch
from recsys_mtl.nn.blocks import MLP
from recsys_mtl.nn.encoders import FeatureEncoder
from recsys_mtl.strict import ParamsModel


class CrossConfig(ParamsModel):
    """A cross network's shape (model param ``cross`` or ``expert_cross``)."""

    kind: Literal["full", "low_rank", "mixture"] = "full"
    """full-rank layers, low-rank layers (U Vᵀ), or a mixture of low-rank experts (DCN-Mix)"""
    num_layers: int = Field(2, ge=1)
    """cross layers L: crosses up to degree L + 1"""
    rank: int = Field(16, ge=1)
    """rank r of U Vᵀ (low_rank, mixture); the paper finds r ≈ D/4 keeps full-rank quality"""
    num_experts: int = Field(4, ge=1)
    """low-rank experts per layer (mixture)"""


class CrossLayer(nn.Module):
    """One full-rank or low-rank cross layer: ``(x_0, x_l)`` (B, D) each → (B, D)."""

    def __init__(self, dim: int, rank: int | None = None):
        super().__init__()
        if rank is None or rank >= dim:  # a rank ≥ D saves nothing: use the full matrix
            self.u: nn.Linear | None = None
            self.w = nn.Linear(dim, dim)
            nn.init.xavier_normal_(self.w.weight)
        else:
            self.u = nn.Linear(rank, dim)
            self.w = nn.Linear(dim, rank, bias=False)  # Vᵀ
            nn.init.xavier_normal_(self.u.weight)
            nn.init.xavier_normal_(self.w.weight)
        bias = self.w.bias if self.u is None else self.u.bias
        nn.init.zeros_(bias)

    def forward(self, x0: Tensor, x: Tensor) -> Tensor:
        h = self.w(x) if self.u is None else self.u(self.w(x))
        return x0 * h + x


class MixtureCrossLayer(nn.Module):
    """DCN-Mix layer: ``num_experts`` low-rank crosses in a nonlinear projected space, gated."""

    def __init__(self, dim: int, rank: int, num_experts: int):
        super().__init__()
        self.v = nn.Parameter(torch.empty(num_experts, dim, rank))
        self.c = nn.Parameter(torch.empty(num_experts, rank, rank))
        self.u = nn.Parameter(torch.empty(num_experts, rank, dim))
        for p in (self.v, self.c, self.u):
            for e in range(num_experts):
                nn.init.xavier_normal_(p.data[e])
        self.bias = nn.Parameter(torch.zeros(dim))
        self.gate = nn.Linear(dim, num_experts, bias=False)

    def forward(self, x0: Tensor, x: Tensor) -> Tensor:
        h = torch.tanh(torch.einsum("bd,edr->ber", x, self.v))  # (B, E, r)
        h = torch.tanh(torch.einsum("ber,ers->bes", h, self.c))  # (B, E, r)
        h = torch.einsum("ber,erd->bed", h, self.u) + self.bias  # (B, E, D)
        experts = x0.unsqueeze(1) * h  # (B, E, D)
        g = torch.softmax(self.gate(x), dim=-1)  # (B, E)
        return (experts * g.unsqueeze(-1)).sum(dim=1) + x


class CrossNetwork(nn.Module):
    """(B, D) → (B, D): ``cfg.num_layers`` cross layers over the same ``x_0``."""

    def __init__(self, dim: int, cfg: CrossConfig):
        super().__init__()
        if dim < 1:
            raise ValueError("CrossNetwork needs an input of width >= 1")
        self.layers = nn.ModuleList([_layer(dim, cfg) for _ in range(cfg.num_layers)])
        self.out_dim = dim

    def forward(self, x0: Tensor) -> Tensor:
        x = x0
        for layer in self.layers:
            x = layer(x0, x)
        return x


def _layer(dim: int, cfg: CrossConfig) -> nn.Module:
    if cfg.kind == "mixture":
        return MixtureCrossLayer(dim, min(cfg.rank, dim), cfg.num_experts)
    return CrossLayer(dim, cfg.rank if cfg.kind == "low_rank" else None)


class CrossedEncoder(FeatureEncoder):
    """A :class:`FeatureEncoder` whose (B, D) output passes through a cross network (B, D).

    The width is unchanged, so every flat-input model is built as without it. The per-feature
    pieces (``feature_embeddings``) are the uncrossed embeddings.
    """

    def __init__(self, cfg: CrossConfig, layout: Layout, *encoder_args: Any):
        super().__init__(layout, *encoder_args)
        self.cross = CrossNetwork(self.output_dim, cfg)

    def forward(self, batch: Batch, leaves: Tensor | None = None) -> Tensor:
        return self.cross(super().forward(batch, leaves))


class CrossExperts(nn.Module):
    """``num_experts`` stacked DCN-v2 experts: (B, in_dim) → (B, E, hidden[-1]).

    Expert e: ``MLP_e(Cross_e(x))``; same interface as :class:`recsys_mtl.nn.blocks.ParallelExperts`
    (``out_dim``, ``num_experts``, ``last_output`` for the sparsity diagnostics).
    """

    def __init__(self, num_experts: int, in_dim: int, hidden: Sequence[int], act: str, dropout: float, cfg: CrossConfig):
        super().__init__()
        if num_experts < 1 or not hidden:
            raise ValueError("CrossExperts needs num_experts >= 1 and at least one hidden layer")
        self.num_experts = num_experts
        self.crosses = nn.ModuleList([CrossNetwork(in_dim, cfg) for _ in range(num_experts)])
        self.mlps = nn.ModuleList([MLP(in_dim, hidden, act, dropout) for _ in range(num_experts)])
        self.out_dim = hidden[-1]
        self.last_output: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        h = torch.stack([mlp(cross(x)) for cross, mlp in zip(self.crosses, self.mlps)], dim=1)
        self.last_output = h.detach()
        return h
