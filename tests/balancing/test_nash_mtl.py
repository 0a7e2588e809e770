"""Nash-MTL: the weights solve the bargaining condition K̂α = 1/α; clipping of the direction."""

from __future__ import annotations

import torch

from recsys_mtl.balancing import build_balancer
from recsys_mtl.balancing.nash_mtl import nash_weights
from tests.support.balancing_utils import linear_losses


def test_orthogonal_gradients_match_the_hand_solution() -> None:
    # K = diag(4, 1), ‖K‖_F = √17: α_t² · K_tt/√17 = 1 ⇒ α = (17^¼/2, 17^¼)
    K = torch.diag(torch.tensor([4.0, 1.0], dtype=torch.float64))
    r = 17**0.25
    torch.testing.assert_close(nash_weights(K), torch.tensor([r / 2, r], dtype=torch.float64), atol=1e-8, rtol=0)


def test_weights_satisfy_the_bargaining_condition() -> None:
    torch.manual_seed(0)
    G = torch.randn(4, 7, dtype=torch.float64)
    K = G @ G.T
    a = nash_weights(K)
    Kn = K / torch.linalg.matrix_norm(K)
    assert bool((a > 0).all())
    torch.testing.assert_close(Kn @ a, 1 / a, atol=1e-7, rtol=0)


def test_balancer_applies_the_bargaining_direction_and_clips_it() -> None:
    G = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    r = 17**0.25
    losses, p, ctx = linear_losses(G)
    build_balancer("nash_mtl", {"max_norm": 0}, ["a", "b"])(losses, ctx).backward()
    torch.testing.assert_close(p.grad, torch.tensor([r, r]))  # α @ G = (2·r/2, 1·r)
    losses, p, ctx = linear_losses(G)
    balancer = build_balancer("nash_mtl", {}, ["a", "b"])  # max_norm 1: ‖(r, r)‖ = r√2 > 1
    balancer(losses, ctx).backward()
    torch.testing.assert_close(p.grad, torch.tensor([1.0, 1.0]) / 2**0.5)
    torch.testing.assert_close(balancer.last_weights, torch.tensor([0.5, 1.0]) / 2**0.5)


def test_zero_gradient_task_gets_zero_weight() -> None:
    G = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    losses, p, ctx = linear_losses(G)
    balancer = build_balancer("nash_mtl", {"max_norm": 0}, ["a", "b"])
    balancer(losses, ctx).backward()
    assert float(balancer.last_weights[1]) == 0.0 and torch.isfinite(p.grad).all()
