"""Aligned-MTL: the aligned gradient system has condition number 1."""

from __future__ import annotations

import torch

from recsys_mtl.balancing import build_balancer
from recsys_mtl.balancing.aligned_mtl import alignment_matrix
from tests.support.balancing_utils import linear_losses


def test_aligned_system_is_perfectly_conditioned() -> None:
    torch.manual_seed(0)
    G = torch.randn(3, 6, dtype=torch.float64) * torch.tensor([[10.0], [1.0], [0.1]])  # ill-conditioned
    s = torch.linalg.svdvals(G)
    assert s.max() / s.min() > 10
    aligned = alignment_matrix(G @ G.T) @ G
    s_hat = torch.linalg.svdvals(aligned)
    torch.testing.assert_close(s_hat.max() / s_hat.min(), torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(s_hat.min(), s.min())  # scaled to G's smallest singular value
    # components are orthogonal: Ĝ Ĝᵀ = σ_min² I
    torch.testing.assert_close(aligned @ aligned.T, s.min() ** 2 * torch.eye(3, dtype=torch.float64))


def test_rank_deficient_gradients_do_not_blow_up() -> None:
    G = torch.tensor([[1.0, 0.0], [2.0, 0.0]], dtype=torch.float64)  # parallel: rank 1
    B = alignment_matrix(G @ G.T)
    assert torch.isfinite(B).all()


def test_balancer_direction_is_sum_of_aligned_gradients() -> None:
    G = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    losses, p, ctx = linear_losses(G)
    build_balancer("aligned_mtl", {}, ["a", "b"])(losses, ctx).backward()
    aligned = alignment_matrix((G @ G.T).double()).float() @ G
    torch.testing.assert_close(p.grad, aligned.sum(0))
