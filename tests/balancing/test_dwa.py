"""DWA: a task whose epoch loss falls slower gets more weight."""

from __future__ import annotations

import torch

from recsys_mtl.balancing import build_balancer
from recsys_mtl.balancing.base import StepContext


def test_weights_follow_loss_ratio_of_last_two_epochs() -> None:
    balancer = build_balancer("dwa", {"temperature": 2.0}, ["a", "b"])
    per_epoch = [torch.tensor([1.0, 1.0]), torch.tensor([0.5, 0.9]), torch.tensor([0.4, 0.8])]
    for epoch, losses in enumerate(per_epoch):
        for step in range(3):
            balancer(losses, StepContext(step=step, epoch=epoch))
        if epoch < 2:
            torch.testing.assert_close(balancer.last_weights, torch.ones(2))
    r = torch.tensor([0.5 / 1.0, 0.9 / 1.0])
    torch.testing.assert_close(balancer.last_weights, 2 * torch.softmax(r / 2.0, 0))
    assert balancer.last_weights[1] > balancer.last_weights[0]
