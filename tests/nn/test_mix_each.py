"""``mix_each``: every gate's mixture, by one bmm at larger sizes, equals ``mix`` per gate in values and gradients."""

from __future__ import annotations

import pytest
import torch

from recsys_mtl.nn.blocks import BMM_MIX_MIN_WORK, mix, mix_each


@pytest.mark.parametrize(("gates", "experts", "hidden"), [(2, 8, 64), (3, 2, 4), (1, 8, 64)])
def test_mix_each_equals_mix_per_gate(gates: int, experts: int, hidden: int) -> None:
    torch.manual_seed(0)
    ex = torch.randn(16, experts, hidden, requires_grad=True)
    ws = [torch.softmax(torch.randn(16, experts), -1).requires_grad_() for _ in range(gates)]
    upstream = [torch.randn(16, hidden) for _ in range(gates)]
    got = mix_each(ex, ws)
    uses_bmm = gates > 1 and gates * experts * hidden >= BMM_MIX_MIN_WORK
    assert all((type(g.grad_fn).__name__ == "UnbindBackward0") == uses_bmm for g in got)
    torch.autograd.backward(got, upstream)
    grads = [ex.grad, *(w.grad for w in ws)]
    ex.grad = None
    for w in ws:
        w.grad = None
    want = [mix(ex, w) for w in ws]
    torch.autograd.backward(want, upstream)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
    for g, w in zip(grads, [ex.grad, *(w.grad for w in ws)]):
        torch.testing.assert_close(g, w)
