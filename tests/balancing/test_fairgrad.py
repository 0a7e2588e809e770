"""FairGrad: the weights solve the α-fair condition K w = w^(−1/α)."""

from __future__ import annotations

import pytest
import torch

from recsys_mtl.balancing import build_balancer
from recsys_mtl.balancing.alpha_fair import alpha_fair_weights
from tests.support.balancing_utils import linear_losses


def test_hand_solutions() -> None:
    # orthogonal, α = 2: K_tt w_t = w_t^(−1/2) ⇒ w_t = K_tt^(−2/3)
    K = torch.diag(torch.tensor([4.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(alpha_fair_weights(K, 2.0), torch.tensor([4 ** (-2 / 3), 1.0], dtype=torch.float64))
    # symmetric pair, α = 1: 1.5c = 1/c ⇒ c = √(2/3)
    K = torch.tensor([[1.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(alpha_fair_weights(K, 1.0), torch.full((2,), (2 / 3) ** 0.5, dtype=torch.float64))


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 5.0])
def test_weights_satisfy_the_alpha_fair_condition(alpha: float) -> None:
    torch.manual_seed(1)
    G = torch.randn(3, 5, dtype=torch.float64)
    K = G @ G.T
    w = alpha_fair_weights(K, alpha)
    assert bool((w > 0).all())
    torch.testing.assert_close(K @ w, w.pow(-1 / alpha), atol=1e-7, rtol=0)


def test_balancer_direction_is_the_weighted_sum() -> None:
    G = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    losses, p, ctx = linear_losses(G)
    balancer = build_balancer("fairgrad", {"alpha": 2.0}, ["a", "b"])
    balancer(losses, ctx).backward()
    torch.testing.assert_close(p.grad, torch.tensor([2 * 4 ** (-2 / 3), 1.0]))
