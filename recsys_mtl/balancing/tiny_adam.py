"""A tiny Adam for strategy-internal weights updated outside the model's optimizer (GradNorm, FAMO)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class TinyAdam(nn.Module):
    """Adam on one (T,) tensor; its moments are buffers, so they are checkpointed with the run."""

    def __init__(self, size: int, lr: float, weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.999)):
        super().__init__()
        self.lr, self.weight_decay, self.betas = lr, weight_decay, betas
        self.register_buffer("m", torch.zeros(size))
        self.register_buffer("v", torch.zeros(size))
        self.register_buffer("t", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def step(self, value: Tensor, grad: Tensor) -> Tensor:
        """Returns ``value`` after one descent step along ``grad`` (both (T,))."""
        b1, b2 = self.betas
        grad = grad.float() + self.weight_decay * value.float()
        self.t += 1
        self.m.mul_(b1).add_((1 - b1) * grad)
        self.v.mul_(b2).add_((1 - b2) * grad * grad)
        t = float(self.t)
        m_hat = self.m / (1 - b1**t)
        v_hat = self.v / (1 - b2**t)
        return value - self.lr * m_hat / (v_hat.sqrt() + 1e-8)
