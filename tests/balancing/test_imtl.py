"""IMTL: the combined gradient has equal projections onto every unit task gradient; IMTL-L's scales."""

from __future__ import annotations

import torch

from recsys_mtl.balancing import build_balancer
from recsys_mtl.balancing.imtl import imtl_g_weights
from tests.support.balancing_utils import linear_losses


def test_two_task_hand_solution() -> None:
    # u = e1, e2; d = (2α1, α2): equal projections 2α1 = α2 with α1 + α2 = 1 ⇒ α = (1/3, 2/3)
    G = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(imtl_g_weights(G @ G.T), torch.tensor([1 / 3, 2 / 3], dtype=torch.float64))


def test_projections_onto_unit_gradients_are_equal() -> None:
    torch.manual_seed(2)
    G = torch.randn(4, 9, dtype=torch.float64)
    a = imtl_g_weights(G @ G.T)
    proj = G @ (a @ G) / G.norm(dim=1)
    torch.testing.assert_close(a.sum(), torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(proj, proj.mean().expand(4))


def test_balancer_scales_losses_and_combines_on_the_sum_scale() -> None:
    G = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    losses, p, ctx = linear_losses(G, base=3.0)
    balancer = build_balancer("imtl", {}, ["a", "b"])
    out = balancer(losses, ctx)
    torch.testing.assert_close(out, torch.tensor(6.0))  # e^0·3 − 0, twice
    out.backward()
    torch.testing.assert_close(p.grad, 2 * torch.tensor([2 / 3, 2 / 3]))  # × T = 2 (rescale)
    # IMTL-L: ∂(e^s L − s)/∂s = e^s L − 1 = 2 at s = 0
    torch.testing.assert_close(balancer.log_scales.grad, torch.tensor([2.0, 2.0]))
