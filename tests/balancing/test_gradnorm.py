"""GradNorm moves the weights toward equal training rates."""

from __future__ import annotations

import torch

from recsys_mtl.balancing import build_balancer
from tests.support.balancing_utils import linear_losses


def test_slow_task_gains_weight_and_weights_sum_to_T() -> None:
    balancer = build_balancer("gradnorm", {"alpha": 1.5, "lr": 0.05}, ["fast", "slow"])
    norms = torch.tensor([1.0, 1.0])
    balancer.update_weights(norms, torch.tensor([1.0, 1.0]))  # records L(0)
    for _ in range(50):  # "fast" has halved its loss, "slow" has not moved
        balancer.update_weights(norms, torch.tensor([0.5, 1.0]))
    w = balancer.weights
    assert w[1] > 1.2 and w[0] < 0.8
    torch.testing.assert_close(w.sum(), torch.tensor(2.0))
    # at the fixed point the weighted gradient norms are in the ratio of the rates^α
    rate = torch.tensor([0.5, 1.0]) / 0.75
    target = rate**1.5 / (rate**1.5).mean()
    torch.testing.assert_close(w, target, atol=0.08, rtol=0)


def test_equal_rates_balance_gradient_magnitudes() -> None:
    balancer = build_balancer("gradnorm", {"alpha": 1.0, "lr": 0.05}, ["a", "b"])
    for _ in range(300):  # same training rate, gradient norms 4:1 → weights 1:4 equalise w·‖g‖
        balancer.update_weights(torch.tensor([4.0, 1.0]), torch.tensor([1.0, 1.0]))
    w = balancer.weights
    torch.testing.assert_close(w[0] * 4, w[1] * 1, rtol=0.1, atol=0)


def test_combine_measures_norms_on_the_shared_representation() -> None:
    G = torch.tensor([[4.0, 0.0], [0.0, 1.0]])
    losses, p, ctx = linear_losses(G)
    balancer = build_balancer("gradnorm", {}, ["a", "b"])
    balancer(losses, ctx).backward()
    torch.testing.assert_close(p.grad, G.sum(0))  # first step: weights 1, applied as loss weights
    assert balancer.weights[1] > balancer.weights[0]  # the smaller gradient gets more weight next
