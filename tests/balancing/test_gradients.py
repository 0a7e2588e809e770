"""The gradient-strategy machinery: per-task gradients, the redirect surrogate, no retained graphs."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from torch import nn

from recsys_mtl.balancing import build_balancer
from recsys_mtl.balancing.base import StepContext
from recsys_mtl.balancing.gradients import redirect, task_gradients
from tests.support.balancing_utils import linear_losses


def test_redirect_puts_direction_on_shared_and_plain_sum_on_towers() -> None:
    torch.manual_seed(0)
    shared = nn.Linear(3, 4)
    towers = nn.ModuleList([nn.Linear(4, 1) for _ in range(2)])
    x = torch.randn(8, 3)
    z = shared(x)
    losses = torch.stack([tower(z).pow(2).mean() for tower in towers])
    G = task_gradients(losses, [z])
    direction = torch.randn(G.shape[1])
    total = redirect(losses, [z], G, direction)
    assert total.item() == pytest.approx(losses.sum().item(), rel=1e-6)  # the value is the plain sum
    total.backward()
    # towers: the usual gradient of Σ L_t
    expected_tower = torch.autograd.grad(
        torch.stack([t(z.detach()).pow(2).mean() for t in towers]).sum(), list(towers.parameters())
    )
    for p, g in zip(towers.parameters(), expected_tower):
        torch.testing.assert_close(p.grad, g)
    # shared layer: its gradient is the chain rule applied to the chosen direction on z
    (expected_w,) = torch.autograd.grad(shared(x), [shared.weight], grad_outputs=direction.view(8, 4))
    torch.testing.assert_close(shared.weight.grad, expected_w)


def test_task_gradients_match_hand_made() -> None:
    G = torch.tensor([[1.0, 2.0, 0.0], [0.0, -1.0, 3.0]])
    losses, _, ctx = linear_losses(G)
    targets, per_sample = ctx.gradient_targets()
    assert per_sample
    torch.testing.assert_close(task_gradients(losses, targets), G)


def test_falls_back_to_shared_parameters_without_representation() -> None:
    p = nn.Parameter(torch.zeros(2))
    ctx = StepContext(step=0, epoch=0, shared=None, shared_params=[p])
    targets, per_sample = ctx.gradient_targets()
    assert targets == [p] and not per_sample
    with pytest.raises(RuntimeError, match="shared"):
        StepContext(step=0, epoch=0).gradient_targets()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["pcgrad", "mgda", "cagrad", "aligned_mtl", "gradnorm", "gcond", "rep_mtl", "nash_mtl", "imtl", "db_mtl", "fairgrad"])
def test_no_graph_outlives_the_step(method: str) -> None:
    """After backward, nothing the strategy keeps references a tensor of that step's graph."""
    balancer = build_balancer(method, {}, ["a", "b"])
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
    heads = nn.ModuleList([nn.Linear(8, 1) for _ in range(2)])
    refs = []
    for step in range(5):
        x = torch.randn(16, 4)
        z = model(x)
        refs.append(weakref.ref(z))
        losses = torch.stack([h(z).pow(2).mean() for h in heads])
        ctx = StepContext(step=step, epoch=0, shared=z, shared_params=list(model.parameters()))
        balancer(losses, ctx).backward()
        del z, losses, ctx
    gc.collect()
    assert all(r() is None for r in refs)
    for value in vars(balancer).values():  # nor any graph-attached tensor in the strategy's state
        if isinstance(value, torch.Tensor):
            assert value.grad_fn is None
