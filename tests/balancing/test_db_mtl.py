"""DB-MTL: log-loss scaling, the gradient moving average and the max-norm equalisation."""

from __future__ import annotations

import torch
from torch import nn

from recsys_mtl.balancing import build_balancer
from recsys_mtl.balancing.base import StepContext


def _losses(p: nn.Parameter) -> tuple[torch.Tensor, StepContext]:
    # L = (2 + 2 p_0, 0.5 + p_1): at p = 0, ∇log L_1 = (1, 0), ∇log L_2 = (0, 2)
    z = p * 1.0
    losses = torch.stack([2 + 2 * z[0], 0.5 + z[1]])
    return losses, StepContext(step=0, epoch=0, shared=z, shared_params=[p])


def test_two_steps_by_hand() -> None:
    p = nn.Parameter(torch.zeros(2))
    balancer = build_balancer("db_mtl", {}, ["a", "b"])  # β = 0.9, σ = 0
    losses, ctx = _losses(p)
    out = balancer(losses, ctx)
    torch.testing.assert_close(out, torch.tensor(2.5))  # the value stays Σ L
    out.backward()
    # b = 0.1·∇log L = ((0.1, 0), (0, 0.2)); factors max‖b‖/‖b_t‖ = (2, 1) ⇒ d = (0.2, 0.2)
    torch.testing.assert_close(p.grad, torch.tensor([0.2, 0.2]))
    torch.testing.assert_close(balancer.last_weights, torch.tensor([2.0, 1.0]))
    p.grad = None
    losses, ctx = _losses(p)
    balancer(losses, ctx).backward()
    # b ← g + 0.9 (b − g) = 0.19·∇log L ⇒ d = (0.38, 0.38)
    torch.testing.assert_close(p.grad, torch.tensor([0.38, 0.38]))


def test_towers_get_the_log_loss_gradient() -> None:
    head = nn.Parameter(torch.tensor([3.0, 1.5]))  # task-specific: L_t = head_t (no shared part)
    p = nn.Parameter(torch.zeros(1))
    losses = head * (1 + p * 0)
    balancer = build_balancer("db_mtl", {"beta": 0.0}, ["a", "b"])
    balancer(losses, StepContext(step=0, epoch=0, shared_params=[p])).backward()
    torch.testing.assert_close(head.grad, 1 / head.detach(), atol=1e-6, rtol=0)
