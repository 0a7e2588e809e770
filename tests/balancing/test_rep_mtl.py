"""Rep-MTL: saliency entropy and alignment on hand-made saliencies; the regularisers reach the model."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from recsys_mtl.balancing import build_balancer
from recsys_mtl.balancing.base import StepContext
from recsys_mtl.balancing.rep_mtl import RepMTL, saliency_alignment, saliency_entropy


#: T = 2 tasks, B = 2 samples, one position, C = 2 channels
S = torch.tensor(
    [
        [[[1.0, 3.0]], [[2.0, 0.0]]],  # task 1: sample 0, sample 1
        [[[1.0, -1.0]], [[0.0, 2.0]]],  # task 2
    ]
)


def test_tsr_on_two_samples_two_channels_by_hand() -> None:
    # channel means: task 1 (2, 1), task 2 (0, 1); softmax over tasks per sample
    p = math.exp(2) / (math.exp(2) + 1)
    h0 = -(p * math.log(p) + (1 - p) * math.log(1 - p))
    h1 = math.log(2)  # equal means: uniform
    assert float(saliency_entropy(S)) == pytest.approx((h0 + h1) / 2, rel=1e-6)


def test_csa_on_two_samples_two_channels_by_hand() -> None:
    # flattened affinity maps s sᵀ, L2-normalised (‖s sᵀ‖ = ‖s‖²)
    m1 = [[0.1, 0.3, 0.3, 0.9], [1.0, 0.0, 0.0, 0.0]]  # task 1, samples 0 and 1
    m2 = [[0.5, -0.5, -0.5, 0.5], [0.0, 0.0, 0.0, 1.0]]  # task 2
    r = 0.6**0.5
    anchors = [[0.3 / r, -0.1 / r, -0.1 / r, 0.7 / r], [2**-0.5, 0.0, 0.0, 2**-0.5]]  # normalised task means
    tau = 0.5

    def dot(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b))

    terms = []
    for maps in (m1, m2):
        for b in range(2):
            logits = [dot(anchors[b], maps[k]) / tau for k in range(2)]
            terms.append(-logits[b] + math.log(sum(math.exp(v) for v in logits)))
    assert float(saliency_alignment(S, tau)) == pytest.approx(sum(terms) / 4, rel=1e-6)


def test_alignment_is_lower_when_tasks_share_per_sample_saliency() -> None:
    torch.manual_seed(0)
    a = torch.randn(8, 3, 5)
    aligned = torch.stack([a, 2 * a])
    unaligned = torch.stack([a, a[torch.randperm(8)]])
    assert saliency_alignment(aligned, 0.1) < saliency_alignment(unaligned, 0.1)


def test_saliency_is_each_rows_own_loss_gradient() -> None:
    z = torch.zeros(4, 2, requires_grad=True)
    w = torch.tensor([[1.0, -2.0], [0.5, 3.0]])
    losses = (z @ w.T).mean(0)  # L_t = mean_b ⟨z_b, w_t⟩
    (sal,) = RepMTL.saliencies(losses, [z])
    torch.testing.assert_close(sal, w[:, None, None, :].expand(2, 4, 1, 2))  # independent of B


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


def test_csa_contrasts_a_subset_of_large_batches() -> None:
    torch.manual_seed(0)
    z = torch.randn(16, 3, requires_grad=True)
    w = torch.randn(2, 3)

    def run(rows: int) -> float:
        losses = (torch.tanh(z) @ w.T).pow(2).mean(0)
        balancer = build_balancer("rep_mtl", {"csa_rows": rows}, ["a", "b"])
        balancer(losses, StepContext(step=0, epoch=0, shared=z))
        return balancer.diagnostics()["csa"]

    losses = (torch.tanh(z) @ w.T).pow(2).mean(0)
    (full,) = RepMTL.saliencies(losses, [z])
    assert run(0) == pytest.approx(float(saliency_alignment(full, 0.1)), rel=1e-5)
    assert run(16) == pytest.approx(run(0), rel=1e-5)  # a subset as large as the batch is the batch
    # InfoNCE over k candidates is about log k when nothing aligns: fewer rows, smaller value
    assert run(4) < run(0)
