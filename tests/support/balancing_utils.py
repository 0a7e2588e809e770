"""Hand-made gradients for the balancing tests: losses whose gradient on a shared tensor is known."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from recsys_mtl.balancing.base import StepContext


def linear_losses(G: Tensor, base: float = 1.0) -> tuple[Tensor, nn.Parameter, StepContext]:
    """(T, N) gradients → losses ``L_t = base + ⟨z, g_t⟩`` with z = p·1 a shared representation.

    ``∂L_t/∂z = g_t`` exactly, so after ``backward()`` of a strategy's output, ``p.grad`` is the
    direction it chose.
    """
    p = nn.Parameter(torch.zeros(G.shape[1]))
    z = p * 1.0
    losses = base + (z[None, :] * G).sum(1)
    return losses, p, StepContext(step=0, epoch=0, shared=z, shared_params=[p])
