"""MoE gates computed in the experts' first GEMM: the same outputs as separate layers, the same
parameters and state-dict keys (old checkpoints load), the experts still captured by hooks."""

from __future__ import annotations

import torch

from recsys_mtl.balancing.capture import SharedCapture
from recsys_mtl.data.tensors import features_only, slice_batch
from recsys_mtl.models import build_model
from recsys_mtl.nn.blocks import Gate, ParallelExperts, mix
from tests.conftest import make_context


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
