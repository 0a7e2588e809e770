"""Rep-MTL: saliency entropy and alignment on hand-made saliencies; the regularisers reach the model."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from recsys_mtl.balancing import build_balancer
from recsys_mtl.balancing.base import StepContext
from recsys_mtl.balancing.rep_mtl import saliency_alignment, saliency_entropy


def test_entropy_is_zero_for_disjoint_and_log_t_for_equal_saliency() -> None:
    disjoint = torch.zeros(2, 4, 6)
    disjoint[0, :, :3] = 1.0
    disjoint[1, :, 3:] = -2.0
    assert float(saliency_entropy(disjoint)) == pytest.approx(0.0, abs=1e-6)
    equal = torch.ones(3, 4, 6)
    assert float(saliency_entropy(equal)) == pytest.approx(math.log(3), rel=1e-5)


def test_alignment_is_lower_when_tasks_share_per_sample_saliency() -> None:
    torch.manual_seed(0)
    a = torch.rand(8, 5)
    aligned = torch.stack([a, 2 * a])
    unaligned = torch.stack([a, a[torch.randperm(8)]])
    assert saliency_alignment(aligned, 0.1) < saliency_alignment(unaligned, 0.1)


def test_regularisers_reach_towers_and_shared_layers() -> None:
    torch.manual_seed(0)
    shared, heads = nn.Linear(3, 6), nn.ModuleList([nn.Linear(6, 1) for _ in range(2)])
    x, y = torch.randn(32, 3), torch.randn(32, 2)

    def grads(method: str) -> list[torch.Tensor]:
        shared.zero_grad()
        heads.zero_grad()
        z = torch.tanh(shared(x))
        losses = torch.stack([(h(z).squeeze(-1) - y[:, t]).pow(2).mean() for t, h in enumerate(heads)])
        ctx = StepContext(step=0, epoch=0, shared=z, shared_params=list(shared.parameters()))
        balancer = build_balancer(method, {}, ["a", "b"])
        balancer(losses, ctx).backward()
        if method == "rep_mtl":
            assert set(balancer.diagnostics()) == {"tsr", "csa"}
        return [p.grad.clone() for p in [*shared.parameters(), *heads.parameters()]]

    for a, b in zip(grads("rep_mtl"), grads("equal")):
        assert not torch.allclose(a, b)


def test_needs_a_representation() -> None:
    p = nn.Parameter(torch.ones(2))
    with pytest.raises(RuntimeError, match="representation"):
        build_balancer("rep_mtl", {}, ["a", "b"])(p * 1.0, StepContext(step=0, epoch=0, shared_params=[p]))
