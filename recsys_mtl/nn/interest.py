"""DTRN's task-specific interest module (TIM): one behaviour-sequence encoder, conditioned per task.

Liu et al., "Deep Task-specific Bottom Representation Network for Multi-Task Recommendation"
(CIKM 2023), section on the Task-specific Interest Module. A *hypernetwork* reads the embedding
of a task and the embedding of a behaviour type (which sequence: clicks, purchases, …) and
generates the conditional parameters of a *conditional transformer* over that behaviour
sequence: the scale γ and shift β of its layer normalisations. The attention and feed-forward
weights are shared, so every (task, behaviour type) pair gets its own encoding of the same
history for the price of a few generated vectors instead of a copy of the network per task.

Per behaviour sequence s, task t, with E (B, L, d) the item embeddings (+ learned positions),
each layer is post-norm (as the original transformer and BST):

    (γ¹, β¹, γ², β²)_{t,s} = Hyper([task_t ; type_s]) + (1, 0, 1, 0)   (4 × (d,) per layer)
    H  = CLN_{t,s}¹(E + MHA(E))          CLN(x) = γ ⊙ (x − μ(x)) / σ(x) + β
    E' = CLN_{t,s}²(H + FFN(H))

MHA masks the padding keys, so padded positions change no real position's output. The encoding
(T, B, L, d) is then pooled per task by the sequence's own pooling from the spec (see
:meth:`recsys_mtl.nn.encoders.FeatureEncoder.pool_sequence`): DIN target attention towards the
candidate item when the sequence declares a query, else mean / sum / max.

Choices where the paper is silent or not followed, and why (no reference code was found; the
descriptions of the paper available here give the hypernetwork inputs and the conditional layer
norms of the transformer, not the read-out or the norm placement):

- The interest is read out of the conditioned encoding by the sequence's spec pooling (DIN
  target attention on the candidate for sequences with a query), shared across tasks: one
  pooling contract per sequence, and ``dtrn`` with and without TIM differ only by the
  conditional transformer.
- Post-norm makes the first layer's attention independent of the task (the conditioning enters
  at its first layer norm), so it runs once on (B, L, d), not T times; only later layers and the
  feed-forward run on the T task copies. A pre-norm variant with small output layers (a residual
  stream that starts as the identity, so ``dtrn`` with TIM starts as ``dtrn`` without it) gave
  the same test AUC on the sequence benchmark (docs/benchmarks.md) at 20% lower throughput.
- The hypernetwork's last layer starts small (γ near 1, β near 0) rather than at 0, so the tasks'
  encodings differ from the first step (task embeddings are random) while starting close to a
  plain transformer.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from recsys_mtl.nn.blocks import MLP
from recsys_mtl.nn.transformer import FeedForward, SelfAttention
from recsys_mtl.strict import ParamsModel

#: added to the attention score of a padding key: exp() of it is exactly 0 in float32, and unlike
#: -inf an all-padding history gives finite (uniform) weights, which the pooling then masks out
PAD_SCORE = -1e9


class InterestConfig(ParamsModel):
    """``model.params.interest`` of ``dtrn``: the task-specific interest module's sizes."""

    embedding_dim: int = Field(8, ge=1)
    """width of the task and behaviour-type embeddings the hypernetwork reads"""
    hyper_hidden: list[int] = Field(default_factory=lambda: [32])
    """hypernetwork hidden widths (ReLU)"""
    num_layers: int = Field(1, ge=1)
    """conditional transformer layers"""
    num_heads: int = Field(1, ge=1)
    """attention heads of each layer"""
    ffn_hidden: int = Field(32, ge=1)
    """feed-forward width of each layer"""
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """dropout inside the feed-forward"""
    positions: bool = False
    """add a learned embedding of each position (0 = the list's first item) to the items; for histories whose order means
    something (off: the list is a set, as multi-hot columns are)
    """


class InterestHypernetwork(nn.Module):
    """Task and behaviour-type embeddings → the conditional layer norms' parameters.

    Output (T, S, num_layers, 2, 2, d): for each task t and behaviour type s, per layer, per
    norm (after attention, after feed-forward), γ and β of width d.
    """

    def __init__(self, num_tasks: int, num_types: int, dim: int, num_layers: int, cfg: InterestConfig):
        super().__init__()
        self.task = nn.Parameter(torch.randn(num_tasks, cfg.embedding_dim))
        self.behaviour = nn.Parameter(torch.randn(num_types, cfg.embedding_dim))
        self.trunk = MLP(2 * cfg.embedding_dim, cfg.hyper_hidden, "relu", 0.0)
        self.out = nn.Linear(self.trunk.out_dim, num_layers * 4 * dim)
        nn.init.normal_(self.out.weight, std=0.01)
        nn.init.zeros_(self.out.bias)
        self.shape = (num_layers, 2, 2, dim)
        # (2, d): added to the raw output so γ starts near 1 and β near 0
        self.register_buffer("base", torch.stack([torch.ones(dim), torch.zeros(dim)]), persistent=False)

    def forward(self) -> Tensor:
        t, s = self.task.shape[0], self.behaviour.shape[0]
        pairs = torch.cat([self.task[:, None].expand(t, s, -1), self.behaviour[None].expand(t, s, -1)], dim=-1)
        return self.out(self.trunk(pairs)).view(t, s, *self.shape) + self.base  # (T, S, layers, 2, 2, d)


class ConditionalTransformerLayer(nn.Module):
    """Post-norm transformer layer whose layer norms take per-task (γ, β).

    (G, B, L, d) sequence with G = 1 (shared by every task) or T, (B, 1, 1, L) additive key mask,
    (T, 2, 2, d) norms' parameters → (T, B, L, d).
    """

    def __init__(self, dim: int, cfg: InterestConfig):
        super().__init__()
        self.attn = SelfAttention(dim, cfg.num_heads)
        self.ffn = FeedForward(dim, cfg.ffn_hidden, "gelu", cfg.dropout)

    def forward(self, x: Tensor, mask: Tensor, norms: Tensor) -> Tensor:
        g, b, length, d = x.shape
        flat = x.reshape(g * b, length, d)
        a = self.attn(flat, mask.repeat(g, 1, 1, 1) if g > 1 else mask).view(g, b, length, d)
        h = _conditional_norm(x + a, norms[:, 0])  # (T, B, L, d)
        return _conditional_norm(h + self.ffn(h), norms[:, 1])


def _conditional_norm(x: Tensor, gamma_beta: Tensor) -> Tensor:
    """(G, B, L, d) with G = 1 or T, (T, 2, d) → (T, B, L, d): layer norm, then task t's γ, β."""
    gamma, beta = gamma_beta[:, 0, None, None], gamma_beta[:, 1, None, None]  # (T, 1, 1, d)
    return F.layer_norm(x, x.shape[-1:]) * gamma + beta


class TaskInterest(nn.Module):
    """The conditional transformer shared by S behaviour sequences of width d, and its hypernetwork.

    ``forward(emb, idx, s)``: (B, L, d) embeddings of behaviour sequence s's (B, L) ids
    (0 = padding) → (T, B, L, d), task t's encoding of it. L ≤ ``max_len``.
    """

    def __init__(self, dim: int, num_tasks: int, max_lens: Sequence[int], cfg: InterestConfig):
        super().__init__()
        if dim % cfg.num_heads:
            raise ValueError(f"the sequence embedding width {dim} is not divisible by num_heads {cfg.num_heads}")
        self.hyper = InterestHypernetwork(num_tasks, len(max_lens), dim, cfg.num_layers, cfg)
        self.layers = nn.ModuleList([ConditionalTransformerLayer(dim, cfg) for _ in range(cfg.num_layers)])
        # zero at the start: the history begins as a set, and order enters only where it helps
        self.positions = nn.Parameter(torch.zeros(max(max_lens), dim)) if cfg.positions else None

    def forward(self, emb: Tensor, idx: Tensor, s: int) -> Tensor:
        mask = ((idx == 0).to(emb.dtype) * PAD_SCORE)[:, None, None, :]  # (B, 1, 1, L)
        x = emb if self.positions is None else emb + self.positions[: emb.shape[1]]
        x = x.unsqueeze(0)  # (1, B, L, d): the first layer's attention is shared by the tasks
        norms = self.hyper()[:, s]  # (T, layers, 2, 2, d)
        for i, layer in enumerate(self.layers):
            x = layer(x, mask, norms[:, i])
        return x

    def shared_parameters(self) -> list[nn.Parameter]:
        """Everything but the task embeddings: every task's encoding goes through them."""
        return [p for p in self.parameters() if p is not self.hyper.task]
