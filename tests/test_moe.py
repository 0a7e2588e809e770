"""Shared-Bottom, OMoE, MMoE: the contract, gradient flow to every expert and gate, gates as distributions."""

from __future__ import annotations

import pytest
import torch

from recsys_mtl.data.tensors import features_only
from recsys_mtl.errors import SpecError
from recsys_mtl.models import available_models, build_model
from tests.conftest import make_context

FOUNDATION = ["shared_bottom", "omoe", "mmoe"]


def test_registry_lists_foundation_models() -> None:
    assert set(FOUNDATION) <= set(available_models())


@pytest.mark.parametrize("name", FOUNDATION)
@pytest.mark.parametrize("num_tasks", [1, 2, 5])
def test_output_contract(name: str, num_tasks: int) -> None:
    ctx, table = make_context(num_tasks, rows=64)
    model = build_model(name, {}, ctx)
    out = model(features_only(table.columns()))
    assert list(out) == [f"task{k}" for k in range(num_tasks)]
    assert all(v.shape == (64,) and v.dtype == torch.float32 for v in out.values())


@pytest.mark.parametrize("name", FOUNDATION)
def test_gradients_reach_every_parameter(name: str) -> None:
    ctx, table = make_context(3, rows=256)
    model = build_model(name, {"num_experts": 4} if name != "shared_bottom" else {}, ctx)
    out = model(features_only(table.columns()))
    sum(v.pow(2).mean() for v in out.values()).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


def test_mmoe_experts_and_gates_each_get_gradient() -> None:
    ctx, table = make_context(2, rows=256)
    model = build_model("mmoe", {"num_experts": 6}, ctx)
    out = model(features_only(table.columns()))
    out["task0"].mean().backward()
    w0 = model.experts.weights[0].grad
    assert all(w0[e].abs().sum() > 0 for e in range(6))  # every expert
    assert model.gates[0].proj.weight.grad.abs().sum() > 0
    assert model.gates[1].proj.weight.grad is None or model.gates[1].proj.weight.grad.abs().sum() == 0  # task1's gate unused by task0


@pytest.mark.parametrize("name", ["omoe", "mmoe"])
def test_gates_are_distributions(name: str) -> None:
    ctx, table = make_context(3, rows=128)
    model = build_model(name, {"num_experts": 5}, ctx)
    model(features_only(table.columns()))
    assert len(model.gates) == (3 if name == "mmoe" else 1)
    for gate in model.gates:
        w = gate.last_weights
        assert w.shape == (128, 5) and torch.all(w >= 0)
        assert torch.allclose(w.sum(-1), torch.ones(128))


@pytest.mark.parametrize("name", FOUNDATION)
def test_batch_independence_in_eval(name: str) -> None:
    ctx, table = make_context(2, rows=200)
    model = build_model(name, {}, ctx).eval()
    full = features_only(table.columns())
    alone = model({k: v[:10] for k, v in full.items()})
    mixed = model({k: torch.cat([v[:10], v[100:]]) for k, v in full.items()})
    for task in alone:
        assert torch.allclose(alone[task], mixed[task][:10], atol=1e-6)


def test_bad_params_name_the_field() -> None:
    ctx, _ = make_context(2, rows=32)
    with pytest.raises(SpecError, match=r"model.params.num_experts"):
        build_model("mmoe", {"num_experts": 0}, ctx)
    with pytest.raises(SpecError, match=r"model.params.experts: unknown parameter"):
        build_model("mmoe", {"experts": 3}, ctx)
    with pytest.raises(SpecError, match=r"model.name: unknown model 'mmoee'"):
        build_model("mmoee", {}, ctx)
