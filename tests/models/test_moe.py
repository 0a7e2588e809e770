"""Shared-Bottom, OMoE, MMoE: registration, which gate a task's gradient reaches, gate count and
width, parameter errors (the shared contract is in test_model_contract.py)."""

from __future__ import annotations

import pytest

from recsys_mtl.data.tensors import features_only
from recsys_mtl.errors import SpecError
from recsys_mtl.models import available_models, build_model
from tests.support.synthetic import make_context

FOUNDATION = ["shared_bottom", "omoe", "mmoe"]


def test_registry_lists_foundation_models() -> None:
    assert set(FOUNDATION) <= set(available_models())


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
def test_one_gate_per_task_or_one_for_all(name: str) -> None:
    ctx, table = make_context(3, rows=128)
    model = build_model(name, {"num_experts": 5}, ctx)
    model(features_only(table.columns()))
    assert len(model.gates) == (3 if name == "mmoe" else 1)
    assert all(gate.last_weights.shape == (128, 5) for gate in model.gates)


def test_bad_params_name_the_field() -> None:
    ctx, _ = make_context(2, rows=32)
    with pytest.raises(SpecError, match=r"model.params.num_experts"):
        build_model("mmoe", {"num_experts": 0}, ctx)
    with pytest.raises(SpecError, match=r"model.params.experts: unknown parameter"):
        build_model("mmoe", {"experts": 3}, ctx)
    with pytest.raises(SpecError, match=r"model.name: unknown model 'mmoee'"):
        build_model("mmoee", {}, ctx)
