"""PCGrad on hand-made gradients."""

from __future__ import annotations

import torch

from recsys_mtl.balancing import build_balancer
from recsys_mtl.balancing.pcgrad import pcgrad_matrix
from tests.support.balancing_utils import linear_losses


def test_conflicting_pair_is_projected() -> None:
    G = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])  # ⟨g1, g2⟩ = −1 < 0
    losses, p, ctx = linear_losses(G)
    balancer = build_balancer("pcgrad", {}, ["a", "b"])
    balancer(losses, ctx).backward()
    g1 = G[0] - (-1.0 / 2.0) * G[1]  # g1 minus its component along g2 → (0.5, 0.5)
    g2 = G[1] - (-1.0 / 1.0) * G[0]  # → (0, 1)
    torch.testing.assert_close(p.grad, g1 + g2)
    assert float(g1 @ G[1]) == 0 and float(g2 @ G[0]) == 0  # each is orthogonal to the other's gradient
    assert balancer.diagnostics()["conflict_rate"] == 1.0


def test_agreeing_pair_is_left_alone() -> None:
    G = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    losses, p, ctx = linear_losses(G)
    balancer = build_balancer("pcgrad", {}, ["a", "b"])
    balancer(losses, ctx).backward()
    torch.testing.assert_close(p.grad, G.sum(0))
    torch.testing.assert_close(balancer.last_weights, torch.ones(2))
    assert balancer.diagnostics()["conflict_rate"] == 0.0


def test_three_tasks_follow_the_given_order() -> None:
    G = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [0.0, -1.0, 1.0]], dtype=torch.float64)
    C, n = pcgrad_matrix(G @ G.T, [[1, 2], [0, 2], [0, 1]])
    # by hand, sequentially against the original gradients
    expected, projections = [], 0
    for i, order in enumerate([[1, 2], [0, 2], [0, 1]]):
        g = G[i].clone()
        for j in order:
            if g @ G[j] < 0:
                g = g - (g @ G[j]) / (G[j] @ G[j]) * G[j]
                projections += 1
        expected.append(g)
    torch.testing.assert_close(C @ G, torch.stack(expected))
    # 5: task 0, once projected off g1, comes to conflict with g2 although g0 ⟂ g2
    assert n == projections == 5
