"""CoBa on a toy validation-loss trajectory: slow tasks gain weight, diverging tasks lose it."""

from __future__ import annotations

import torch

from recsys_mtl.balancing import build_balancer
from recsys_mtl.balancing.base import StepContext
from recsys_mtl.balancing.coba import slope

FAST = [1.0, 0.7, 0.5, 0.38, 0.3, 0.25, 0.22, 0.2]
SLOW_THEN_DIVERGING = [1.0, 0.97, 0.95, 0.93, 1.0, 1.1, 1.25, 1.4]


def test_slope_is_least_squares() -> None:
    v = torch.tensor([[1.0, 0.0], [0.8, 1.0], [0.6, 2.0]], dtype=torch.float64)
    torch.testing.assert_close(slope(v), torch.tensor([-0.2, 1.0], dtype=torch.float64))


def test_convergence_then_divergence() -> None:
    balancer = build_balancer("coba", {"window": 3}, ["fast", "slow"])
    weights, factors = [], []
    for epoch, losses in enumerate(zip(FAST, SLOW_THEN_DIVERGING)):
        balancer.on_validation_end(torch.tensor(losses), epoch)
        weights.append(balancer.last_weights.clone())
        factors.append(balancer.diagnostics()["divergence_factor"])
    # warm-up: equal weights until the window holds enough validations
    torch.testing.assert_close(weights[1], torch.ones(2))
    # all converging: the slower task gets more weight (RCS), DF = 1
    assert weights[2][1] > weights[2][0] and factors[2] == 1.0
    # "slow" turns up: DF falls below 1 (ACS takes over) and the diverging task loses its weight
    assert factors[5] < 0.5
    assert weights[5][1] < weights[5][0]
    for w in weights:
        torch.testing.assert_close(w.sum(), torch.tensor(2.0))


def test_combine_uses_the_current_weights() -> None:
    balancer = build_balancer("coba", {}, ["a", "b"])
    balancer.last_weights = torch.tensor([0.5, 1.5])
    out = balancer(torch.tensor([2.0, 1.0]), StepContext(step=0, epoch=0))
    torch.testing.assert_close(out, torch.tensor(2.5))
