"""``pooled_gather``: the sum of gathered rows, its gradient equal to autograd's on the plain ops."""

from __future__ import annotations

import torch

from recsys_mtl.nn.pooled_gather import pooled_gather


def test_forward_and_gradient_equal_the_plain_gather_and_sum() -> None:
    torch.manual_seed(0)
    weight = torch.randn(12, 3, requires_grad=True)
    index = torch.randint(0, 12, (7, 4))
    index[0] = 5  # repeated rows within one bag and across bags add up
    index[1, :2] = 5
    upstream = torch.randn(7, 3)
    out = pooled_gather(weight, index)
    out.backward(upstream)
    plain = weight.detach().clone().requires_grad_(True)
    expected = plain.index_select(0, index.flatten()).view(7, 4, 3).sum(1)
    expected.backward(upstream)
    torch.testing.assert_close(out, expected)
    assert weight.grad is not None and plain.grad is not None
    torch.testing.assert_close(weight.grad, plain.grad)
    untouched = torch.ones(12, dtype=torch.bool)
    untouched[index.flatten()] = False
    assert bool((weight.grad[untouched] == 0).all())


def test_gradcheck_in_double() -> None:
    torch.manual_seed(1)
    weight = torch.randn(6, 2, dtype=torch.float64, requires_grad=True)
    index = torch.randint(0, 6, (5, 3))
    assert torch.autograd.gradcheck(lambda w: pooled_gather(w, index), (weight,))
