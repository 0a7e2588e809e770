"""``gate_weights``: several gates' softmax as one over a (T, E, B) stack equals each gate's own, in
values, gradients and the weights kept for diagnostics; single gates, unequal or partly masked gates and compiled graphs keep theirs."""

from __future__ import annotations

import pytest
import torch

from recsys_mtl.nn.blocks import Gate, gate_weights


def _gates(masked: bool) -> list[Gate]:
    torch.manual_seed(0)
    allowed = torch.tensor([True, False, True, True, False, True, True, True]) if masked else None
    other = torch.tensor([True, True, False, True, True, True, False, True]) if masked else None
    return [Gate(5, 8, allowed, task="a"), Gate(5, 8, other, task="b"), Gate(5, 8, allowed, task="c")]


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("autocast", [False, True])
def test_one_softmax_equals_each_gates_weights(masked: bool, autocast: bool) -> None:
    gates = _gates(masked)
    logits = torch.randn(32, 8 * len(gates), requires_grad=True)
    upstream = [torch.randn(32, 8) for _ in gates]
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        z = logits.to(torch.bfloat16) if autocast else logits
        got = gate_weights(gates, list(z.split(8, dim=1)))
    assert got[0].grad_fn is not None and type(got[0].grad_fn).__name__ != "SoftmaxBackward0"  # the stacked path ran
    kept = [g.last_weights for g in gates]
    torch.autograd.backward(got, upstream)
    grad, logits.grad = logits.grad, None
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        z = logits.to(torch.bfloat16) if autocast else logits
        want = [g.weights(part) for g, part in zip(gates, z.split(8, dim=1))]
    torch.autograd.backward(want, upstream)
    for g, w, k in zip(got, want, kept):
        assert g.shape == w.shape == (32, 8) and g.dtype == w.dtype
        torch.testing.assert_close(g, w)
        torch.testing.assert_close(k, w.detach())
    torch.testing.assert_close(grad, logits.grad)
    if masked:  # masked experts get exactly 0
        assert float(got[0][:, 1].detach().abs().max()) == 0.0 and float(got[1][:, 1].detach().min()) > 0.0


def test_one_gate_or_unequal_gates_or_a_compiled_graph_use_each_gates_softmax(monkeypatch: pytest.MonkeyPatch) -> None:
    gates = _gates(False)
    z = torch.randn(4, 24, requires_grad=True)
    (one,) = gate_weights(gates[:1], [z[:, :8]])
    assert type(one.grad_fn).__name__ == "SoftmaxBackward0"
    small = Gate(5, 4)
    got = gate_weights([gates[0], small], [z[:, :8], z[:, 8:12]])
    assert [type(w.grad_fn).__name__ for w in got] == ["SoftmaxBackward0"] * 2
    half = Gate(5, 8, torch.tensor([True] * 7 + [False]))  # one gate masked, one not: each its own
    got = gate_weights([gates[0], half], [z[:, :8], z[:, 8:16]])
    assert [type(w.grad_fn).__name__ for w in got] == ["SoftmaxBackward0"] * 2
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    got = gate_weights(gates, list(z.split(8, dim=1)))
    assert [type(w.grad_fn).__name__ for w in got] == ["SoftmaxBackward0"] * 3
