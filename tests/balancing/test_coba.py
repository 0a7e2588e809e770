"""CoBa on toy validation-loss trajectories: per-step updates, slow tasks gain weight, diverging
tasks lose it, state survives a checkpoint; and in a real fit the weights move in epoch 0."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from recsys_mtl.balancing import build_balancer
from recsys_mtl.balancing.base import StepContext
from recsys_mtl.balancing.coba import slope
from tests.support.pipelines import short_fit


def test_slope_is_least_squares() -> None:
    v = torch.tensor([[1.0, 0.0], [0.8, 1.0], [0.6, 2.0]], dtype=torch.float64)
    torch.testing.assert_close(slope(v), torch.tensor([-0.2, 1.0], dtype=torch.float64))


def feed(balancer, losses_per_step):  # type: ignore[no-untyped-def]
    weights = []
    for step, losses in enumerate(losses_per_step):
        balancer.after_step(torch.tensor(losses), step)
        weights.append(balancer.last_weights.clone())
    return weights


def test_per_step_updates_favour_the_slower_task_after_warmup() -> None:
    balancer = build_balancer("coba", {"warmup_steps": 10, "history": 20}, ["fast", "slow"])
    balancer.set_reference(torch.tensor([1.0, 1.0]))
    steps = [(math.exp(-0.1 * s), math.exp(-0.01 * s)) for s in range(40)]
    weights = feed(balancer, steps)
    torch.testing.assert_close(weights[8], torch.ones(2))  # warm-up: equal weights
    assert weights[12][1] > weights[12][0] + 0.2  # moved right after the warm-up, toward "slow"
    assert all(abs(float(w.sum()) - 2.0) < 1e-5 for w in weights)
    assert all(float(w.min()) >= 2 * (1 / 20) - 1e-6 for w in weights)  # the 1/(10T) floor, sum scale


def test_diverging_task_loses_weight() -> None:
    balancer = build_balancer("coba", {"warmup_steps": 5, "history": 10}, ["steady", "diverging"])
    balancer.set_reference(torch.tensor([1.0, 1.0]))
    down = [(1 - 0.02 * s, 1 - 0.01 * s) for s in range(20)]
    up = [(0.6 - 0.02 * s, 0.8 + 0.05 * s) for s in range(20)]
    weights = feed(balancer, down + up)
    assert weights[15][1] > weights[15][0]  # converging more slowly: more weight
    assert weights[-1][1] < weights[-1][0]  # now rising: less weight
    assert balancer.diagnostics()["divergence_factor"] < 0.5


def test_state_survives_a_checkpoint() -> None:
    a = build_balancer("coba", {"warmup_steps": 3, "history": 5}, ["a", "b"])
    a.set_reference(torch.tensor([2.0, 1.0]))
    feed(a, [(2.0 - 0.1 * s, 1.0 - 0.01 * s) for s in range(8)])
    b = build_balancer("coba", {"warmup_steps": 3, "history": 5}, ["a", "b"])
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(b.last_weights, a.last_weights)
    nxt = (1.1, 0.9)
    wa, wb = feed(a, [nxt]), feed(b, [nxt])
    torch.testing.assert_close(wa[-1], wb[-1])


def test_combine_uses_the_current_weights() -> None:
    balancer = build_balancer("coba", {}, ["a", "b"])
    balancer.last_weights = torch.tensor([0.5, 1.5])
    out = balancer(torch.tensor([2.0, 1.0]), StepContext(step=0, epoch=0))
    torch.testing.assert_close(out, torch.tensor(2.5))


@pytest.mark.slow
def test_weights_move_within_the_first_epoch(tmp_path: Path) -> None:
    _, logs = short_fit(tmp_path, "coba", "trainer.max_epochs=1", "data.task_correlation=0.0")
    first = logs.filter(logs["epoch"] == 0)
    w = first["balance/task0/weight"].drop_nulls()
    assert (w - 1.0).abs().max() > 1e-3


def test_slope_skips_missing_points_at_their_positions() -> None:
    nan = float("nan")
    v = torch.tensor([[1.0, nan], [0.8, 1.0], [0.6, nan], [0.4, 3.0], [0.2, nan]], dtype=torch.float64)
    torch.testing.assert_close(slope(v), torch.tensor([-0.2, 1.0], dtype=torch.float64))
    only_one = torch.tensor([[nan], [2.0], [nan]], dtype=torch.float64)
    torch.testing.assert_close(slope(only_one), torch.zeros(1, dtype=torch.float64))


def test_zero_loss_is_dropped_not_recorded() -> None:
    balancer = build_balancer("coba", {"warmup_steps": 50, "history": 60}, ["a", "b"])
    feed(balancer, [(1.0, 0.0), (0.9, 2.0), (0.8, 0.0)])
    torch.testing.assert_close(balancer.reference, torch.tensor([1.0, 2.0], dtype=torch.float64))  # b's first real loss
    h = balancer.history
    assert torch.isnan(h[0, 1]) and torch.isnan(h[2, 1]) and float(h[1, 1]) == 1.0


def test_sparse_task_gets_the_weights_of_its_observed_trend() -> None:
    # linear normalised losses: a task seen only every other step has the same least-squares slope,
    # so the weights equal those of a run that saw it every step (a recorded 0 would distort them)
    cfg = {"warmup_steps": 5, "history": 10}
    steps = [(1 - 0.005 * s, 0.8 - 0.02 * s) for s in range(30)]
    sparse = [(a, b if s % 2 == 0 else 0.0) for s, (a, b) in enumerate(steps)]
    dense_b, sparse_b = build_balancer("coba", cfg, ["a", "b"]), build_balancer("coba", cfg, ["a", "b"])
    for bal in (dense_b, sparse_b):
        bal.set_reference(torch.tensor([1.0, 1.0]))
    w_dense, w_sparse = feed(dense_b, steps), feed(sparse_b, sparse)
    for wd, ws in zip(w_dense, w_sparse):
        torch.testing.assert_close(ws, wd)
    assert float((w_dense[-1] - 1).abs().max()) > 0.05  # the weights did move
