"""Uncertainty weighting reaches its closed-form optimum s_t = log L_t."""

from __future__ import annotations

import torch

from recsys_mtl.balancing import build_balancer
from recsys_mtl.balancing.base import StepContext


def test_learned_log_variances_match_closed_form() -> None:
    losses = torch.tensor([0.05, 2.0, 0.7])
    balancer = build_balancer("uncertainty", {}, ["a", "b", "c"])
    opt = torch.optim.Adam(balancer.parameters(), lr=0.05)
    for step in range(2000):
        opt.zero_grad()
        balancer(losses, StepContext(step=step, epoch=0)).backward()
        opt.step()
    torch.testing.assert_close(balancer.log_vars.detach(), losses.log(), atol=1e-3, rtol=0)
    torch.testing.assert_close(balancer.last_weights, 1 / losses, rtol=2e-3, atol=0)


def test_value_is_the_standard_form() -> None:
    balancer = build_balancer("uncertainty", {"init_log_var": 0.5}, ["a", "b"])
    losses = torch.tensor([1.0, 3.0])
    out = balancer(losses, StepContext(step=0, epoch=0))
    expected = (torch.exp(torch.tensor(-0.5)) * losses + 0.5).sum()
    torch.testing.assert_close(out.detach(), expected)
