"""DIN target attention over a behaviour sequence (Zhou et al., "Deep Interest Network for
Click-Through Rate Prediction", KDD 2018).

The user's history is pooled with weights that depend on the candidate: for history embeddings
``e_j`` and the query (candidate) embedding ``q``, a local activation unit gives

    w_j = MLP([q, e_j, q − e_j, q ⊙ e_j])            (hidden layers, then one output)
    v   = Σ_j w_j · e_j                              (padding positions: w_j = 0)

so the same history yields a different vector for every candidate. Following the paper, the
weights are not normalised (softmax "is abandoned to reserve the intensity of user interests");
``softmax: true`` gives the normalised variant of DIN's reference code (padding gets no weight,
an empty history pools to 0 either way). As in the reference code, the unit's hidden layers use
sigmoid activations and its input is the concatenation above (the paper's figure also shows an
outer product; the reference code, and DeepCTR after it, use the difference and the product).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn


class LocalActivationUnit(nn.Module):
    """(B, d) query, (B, L, d) keys → (B, L) raw attention scores."""

    def __init__(self, dim: int, hidden: Sequence[int]):
        super().__init__()
        layers: list[nn.Module] = []
        d = 4 * dim
        for h in hidden:
            layers += [nn.Linear(d, h), nn.Sigmoid()]
            d = h
        layers.append(nn.Linear(d, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, query: Tensor, keys: Tensor) -> Tensor:
        q = query.unsqueeze(1).expand_as(keys)
        return self.mlp(torch.cat([q, keys, q - keys, q * keys], dim=-1)).squeeze(-1)


class TargetAttentionPooling(nn.Module):
    """(B, d) query, (B, L, d) sequence embeddings, (B, L) indices (0 = padding) → (B, d).

    ``last_weights`` keeps the (B, L) weights of the last call (padding at 0), for inspection.
    """

    def __init__(self, dim: int, hidden: Sequence[int] = (80, 40), softmax: bool = False):
        super().__init__()
        self.unit = LocalActivationUnit(dim, hidden)
        self.softmax = softmax
        self.last_weights: Tensor | None = None

    def forward(self, query: Tensor, keys: Tensor, idx: Tensor) -> Tensor:
        mask = (idx != 0).to(keys.dtype)  # (B, L)
        scores = self.unit(query, keys)
        if self.softmax:
            # a large negative, not -inf: an all-padding row would give NaN; the mask below then
            # zeroes its (uniform) weights
            scores = torch.softmax(scores + (mask - 1.0) * 1e9, dim=-1)
        weights = scores * mask
        self.last_weights = weights.detach()
        return (weights.unsqueeze(-1) * keys).sum(dim=1)
