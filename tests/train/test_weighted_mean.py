"""The one masked weighted-mean reduction of per-row losses, for one task (B,) and for all tasks (B, T)."""

from __future__ import annotations

import torch

from recsys_mtl.train.losses import weighted_mean


def test_one_task_is_the_hand_computed_weighted_mean() -> None:
    values = torch.tensor([1.0, 2.0, 4.0, 8.0])
    weights = torch.tensor([1.0, 0.0, 2.0, 1.0])  # row 2 masked out, row 3 counted twice
    assert weighted_mean(values, weights).item() == (1.0 + 2 * 4.0 + 8.0) / 4.0


def test_all_tasks_reduce_each_column_and_a_masked_task_is_zero() -> None:
    torch.manual_seed(0)
    rows = torch.rand(257, 3)
    weights = (torch.rand(257, 3) > 0.4).float()
    weights[:, 2] = 0.0  # a task no row of this batch counts
    out = weighted_mean(rows, weights)
    assert out.shape == (3,)
    for t in range(2):
        torch.testing.assert_close(out[t], weighted_mean(rows[:, t], weights[:, t]))
    assert out[2].item() == 0.0


def test_one_task_keeps_the_previous_arithmetic_bitwise() -> None:
    torch.manual_seed(1)
    values, weights = torch.rand(4097) * 10, (torch.rand(4097) > 0.3).float()
    before = (values * weights).sum() / weights.sum().clamp_min(1e-12)  # the former 1-D formula
    assert torch.equal(weighted_mean(values, weights), before)
