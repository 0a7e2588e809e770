"""MoE gates computed in the experts' first GEMM: the same outputs as separate layers, the same
parameters and state-dict keys (old checkpoints load), the experts still captured by hooks."""

from __future__ import annotations

import pytest
import torch

from recsys_mtl.balancing.capture import SharedCapture
from recsys_mtl.data.tensors import features_only, slice_batch
from recsys_mtl.models import build_model
from recsys_mtl.nn.blocks import Gate, ParallelExperts, mix
from tests.support.synthetic import make_context


def test_side_linears_ride_the_first_gemm() -> None:
    torch.manual_seed(0)
    experts = ParallelExperts(3, 10, [6, 5])
    gates = [Gate(10, 3), Gate(10, 3)]
    x = torch.randn(7, 10)
    logits: list[torch.Tensor] = []
    fused = experts(x, [g.proj for g in gates], logits)
    torch.testing.assert_close(fused, experts(x))
    for g, z in zip(gates, logits):
        torch.testing.assert_close(g.weights(z), g(x))
    fused.sum().backward(retain_graph=True)
    # one GEMM: the unused gate columns get exactly zero gradient, the used ones their own
    assert all(g.proj.weight.grad is not None and not g.proj.weight.grad.any() for g in gates)
    for g in gates:
        g.proj.weight.grad = None
    sum(z.sum() for z in logits).backward()
    x_rows = x.sum(0)
    for g in gates:  # d(sum of logits)/dW = sum over rows of x, for every output unit
        torch.testing.assert_close(g.proj.weight.grad, x_rows.expand_as(g.proj.weight))


def test_mmoe_forward_equals_the_unfused_layers_and_keeps_its_keys() -> None:
    context, table = make_context(2)
    torch.manual_seed(0)
    model = build_model("mmoe", {"num_experts": 4, "expert_hidden": [8], "exclusivity": 0.5}, context).eval()
    x = model.encoder(features_only(slice_batch(table.columns(), 0, 32)))
    expected = [mix(model.experts(x), gate(x)) for gate in model.gates]  # the layers one by one
    for got, want in zip(model.task_inputs(x), expected):
        torch.testing.assert_close(got, want)
    keys = set(model.state_dict())
    # the parameter names of checkpoints written before the fusion
    assert {"experts.weights.0", "experts.biases.0", "gates.0.proj.weight", "gates.1.proj.bias", "gates.0.log_mask"} <= keys
    fresh = build_model("mmoe", {"num_experts": 4, "expert_hidden": [8], "exclusivity": 0.5}, context)
    fresh.load_state_dict(model.state_dict())  # strict


def test_balancer_capture_still_sees_the_experts() -> None:
    context, table = make_context(2)
    model = build_model("mmoe", {"num_experts": 3, "expert_hidden": [8]}, context).train()
    capture = SharedCapture(model)
    model(features_only(slice_batch(table.columns(), 0, 16)))
    (shared,) = capture.pop()
    assert shared.shape == (16, 3, 8) and shared.requires_grad


def _level_reference(level, task_inputs, shared_input):  # type: ignore[no-untyped-def]
    """A CGC level's outputs with every bank and gate run on its own (the unfused forward)."""
    own = [bank(x) for bank, x in zip(level.task_experts, task_inputs)] if level.task_experts is not None else []
    shared = [level.shared_experts(shared_input)] if level.shared_experts is not None else []
    cat = lambda parts: torch.cat(parts, dim=1)  # noqa: E731
    outs = [mix(cat(([own[t]] if own else []) + shared), gate(x)) for t, (gate, x) in enumerate(zip(level.task_gates, task_inputs))]
    shared_out = mix(cat(own + shared), level.shared_gate(shared_input)) if level.shared_gate is not None else None
    return outs, shared_out


@pytest.mark.parametrize("params", [
    {"num_levels": 2, "task_experts": 2, "shared_experts": 1, "expert_hidden": [8]},
    {"num_levels": 2, "task_experts": 0, "shared_experts": 3, "expert_hidden": [8], "exclusivity": 0.5},
    {"num_levels": 2, "task_experts": 2, "shared_experts": 0, "expert_hidden": [8]},
])
def test_ple_levels_equal_the_unfused_layers(params: dict) -> None:
    context, table = make_context(2)
    torch.manual_seed(0)
    model = build_model("ple", params, context).eval()
    x = model.encoder(features_only(slice_batch(table.columns(), 0, 32)))
    inputs, shared = [x, x], x
    for level in model.levels:
        got, got_shared = level(inputs, shared)
        want, want_shared = _level_reference(level, inputs, shared)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b)
        assert (got_shared is None) == (want_shared is None)
        if want_shared is not None:
            torch.testing.assert_close(got_shared, want_shared)
        inputs, shared = got, got_shared if got_shared is not None else x
