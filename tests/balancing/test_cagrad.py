"""CAGrad on hand-made gradients."""

from __future__ import annotations

import torch

from recsys_mtl.balancing.cagrad import cagrad_coefficients


def test_c_zero_is_the_mean_gradient() -> None:
    G = torch.tensor([[1.0, 0.0], [-0.5, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(cagrad_coefficients(G @ G.T, c=0.0), torch.full((2,), 0.5, dtype=torch.float64))


def test_worst_task_improves_more_than_under_the_mean() -> None:
    G = torch.tensor([[1.0, 0.0], [-0.9, 0.3]], dtype=torch.float64)  # strong conflict
    mean = G.mean(0)
    d = cagrad_coefficients(G @ G.T, c=0.5) @ G
    assert float((G @ d).min()) > float((G @ mean).min())
    # and d stays within the ball of radius c·‖g0‖ around g0 (after the 1/(1+c²) rescale)
    assert float((d * 1.25 - mean).norm()) <= 0.5 * float(mean.norm()) + 1e-6
