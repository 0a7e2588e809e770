"""MGDA-UB: the min-norm point of the convex hull of the task gradients."""

from __future__ import annotations

import pytest
import torch

from recsys_mtl.balancing import build_balancer
from recsys_mtl.balancing.mgda import min_norm_weights
from tests.support.balancing_utils import linear_losses


@pytest.mark.parametrize(
    ("G", "alpha"),
    [
        ([[1.0, 0.0], [0.0, 1.0]], [0.5, 0.5]),  # orthogonal, equal norms: the midpoint
        ([[2.0, 0.0], [0.0, 1.0]], [0.2, 0.8]),  # min of 4a² + (1−a)² at a = 1/5 → point (0.4, 0.8)
        ([[1.0, 0.0], [1.0, 1.0]], [1.0, 0.0]),  # the hull's closest point to 0 is the vertex g1
    ],
)
def test_min_norm_point_on_2d_cases(G: list[list[float]], alpha: list[float]) -> None:
    G_ = torch.tensor(G, dtype=torch.float64)
    torch.testing.assert_close(min_norm_weights(G_ @ G_.T), torch.tensor(alpha, dtype=torch.float64), atol=1e-6, rtol=0)


def test_three_task_solution_is_optimal() -> None:
    torch.manual_seed(0)
    G = torch.randn(3, 5, dtype=torch.float64)
    a = min_norm_weights(G @ G.T, iters=5000)
    best = float((a @ G).norm())
    for _ in range(2000):  # no random point of the simplex does better
        w = torch.distributions.Dirichlet(torch.ones(3, dtype=torch.float64)).sample()
        assert float((w @ G).norm()) >= best - 1e-9


def test_balancer_applies_the_min_norm_direction_on_sum_scale() -> None:
    G = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    losses, p, ctx = linear_losses(G)
    balancer = build_balancer("mgda", {}, ["a", "b"])
    balancer(losses, ctx).backward()
    torch.testing.assert_close(p.grad, 2 * torch.tensor([0.4, 0.8]))  # × T = 2 (rescale)
    torch.testing.assert_close(balancer.last_weights, torch.tensor([0.4, 1.6]))
