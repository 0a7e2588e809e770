"""FAMO: weights are z_t / L_t (normalised) and shift toward the task improving less."""

from __future__ import annotations

import torch

from recsys_mtl.balancing import build_balancer
from recsys_mtl.balancing.base import StepContext


def test_initial_weights_are_inverse_loss() -> None:
    balancer = build_balancer("famo", {}, ["a", "b"])
    balancer(torch.tensor([1.0, 3.0]), StepContext(step=0, epoch=0))
    torch.testing.assert_close(balancer.last_weights, torch.tensor([1.5, 0.5]))


def test_logits_favour_the_task_whose_loss_decreases_less() -> None:
    balancer = build_balancer("famo", {}, ["improving", "stuck"])
    losses = torch.tensor([1.0, 1.0])
    for step in range(100):
        balancer(losses, StepContext(step=step, epoch=0))
        losses = losses * torch.tensor([0.97, 1.0])
    z = torch.softmax(balancer.logits, 0)
    assert z[1] > 0.6
