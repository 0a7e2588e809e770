"""GCond: arbitration keeps the lagging task's gradient; accumulation ignores one-step noise."""

from __future__ import annotations

import torch

from recsys_mtl.balancing import build_balancer
from recsys_mtl.balancing.gcond import arbitrate
from recsys_mtl.balancing.pcgrad import pcgrad_matrix
from tests.balancing_utils import linear_losses


def test_arbitration_projects_only_the_lower_priority_task() -> None:
    G = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
    C, n = arbitrate(G @ G.T, priority=torch.tensor([0.5, 0.9]))  # task 1 lags: it wins
    resolved = C @ G
    torch.testing.assert_close(resolved[1], G[1])
    torch.testing.assert_close(resolved[0], torch.tensor([0.5, 0.5], dtype=torch.float64))
    assert n == 1
    C, _ = arbitrate(G @ G.T, priority=torch.tensor([0.9, 0.5]))  # the other way round
    torch.testing.assert_close((C @ G)[0], G[0])


def test_accumulation_ignores_a_single_conflicting_step() -> None:
    agree = torch.tensor([[1.0, 0.0], [0.5, 1.0]])
    noisy = torch.tensor([[1.0, 0.0], [-3.0, 0.2]])  # one step where task 1 points against task 0
    losses = torch.tensor([1.0, 1.0])
    balancer = build_balancer("gcond", {"accum_steps": 8}, ["a", "b"])
    for _ in range(7):
        balancer.observe(agree, losses)
    balancer.observe(noisy, losses)
    torch.testing.assert_close(balancer.last_weights, torch.ones(2))  # no projection
    assert balancer.diagnostics()["conflict_rate"] == 0.0
    K = (noisy @ noisy.T).double()
    C, n = pcgrad_matrix(K, [[1], [0]])  # per-step PCGrad would have projected on that step
    assert n == 2


def test_sustained_conflict_is_resolved_after_the_window() -> None:
    conflict = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
    balancer = build_balancer("gcond", {"accum_steps": 4}, ["a", "b"])
    balancer.observe(conflict, torch.tensor([1.0, 1.0]))  # records L(0)
    for _ in range(3):
        balancer.observe(conflict, torch.tensor([0.5, 0.9]))  # task b lags → b has priority
    expected = torch.tensor([1.0, 1.5])  # ĝ_a = g_a + ½ g_b; g_b kept → coefficients (1, 1.5)
    torch.testing.assert_close(balancer.last_weights, expected)
    # the next step's shared-parameter gradient uses those coefficients on its own gradients
    losses, p, ctx = linear_losses(conflict)
    ctx.shared = None  # GCond works on the shared parameters
    balancer(losses, ctx).backward()
    torch.testing.assert_close(p.grad, expected @ conflict)
