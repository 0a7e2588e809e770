"""AdaTT: fusion-unit wiring (gate over all + residual of own experts), parameter errors (the
shared contract is in test_model_contract.py)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from recsys_mtl.data.tensors import features_only
from recsys_mtl.errors import SpecError
from recsys_mtl.models import build_model
from recsys_mtl.nn.blocks import mix
from tests.support.synthetic import make_context

SP: dict[str, Any] = {"variant": "sp", "num_levels": 2, "task_experts": 2, "expert_hidden": [16], "tower_hidden": [8]}
GENERAL = SP | {"variant": "general", "shared_experts": 2}
VARIANTS = pytest.mark.parametrize("params", [SP, GENERAL], ids=["sp", "general"])


@VARIANTS
def test_unit_wiring(params: dict[str, Any]) -> None:
    ctx, _ = make_context(3, rows=32)
    model = build_model("adatt", params, ctx)
    general = params["variant"] == "general"
    n_all = 3 * 2 + (2 if general else 0)
    first, last = model.levels
    assert len(first.units) == 3 + general and len(last.units) == 3  # no shared unit on the last level
    for t, unit in enumerate(first.units[:3]):
        assert unit.gate.proj.out_features == n_all  # the gate fuses every expert of the level
        assert unit.residual.shape == (2,)  # the residual combines only the unit's own experts
        assert unit.gate.owners[2 * t : 2 * t + 2] == [f"task{t}"] * 2


def test_fusion_is_gate_over_all_plus_residual_of_own() -> None:
    ctx, table = make_context(2, rows=16)
    model = build_model("adatt", SP | {"num_levels": 1}, ctx)
    level = model.levels[0]
    with torch.no_grad():
        for unit in level.units:
            unit.residual.uniform_(-1, 1)
        x = model.encoder(features_only(table.columns()))
        got = level([x, x])
        own = [bank(x) for bank in level.experts]
        all_experts = torch.cat(own, dim=1)
        for t, unit in enumerate(level.units):
            want = mix(all_experts, torch.softmax(unit.gate.proj(x), -1)) + (own[t] * unit.residual[None, :, None]).sum(1)
            assert torch.allclose(got[t], want, atol=1e-6)


def _task0_changes_when_task1_experts_change(isolate: bool) -> bool:
    ctx, table = make_context(2, rows=32)
    model = build_model("adatt", SP, ctx).eval()
    batch = features_only(table.columns())
    with torch.no_grad():
        if isolate:  # every gate weights only its own unit's experts
            for level in model.levels:
                for unit in level.units:
                    unit.gate.proj.weight.zero_()
                    unit.gate.proj.bias.copy_(torch.tensor([0.0 if o == unit.gate.task else -1e9 for o in unit.gate.owners]))
        before = model(batch)["task0"]
        model.levels[0].experts[1].weights[0].add_(0.5)
        after = model(batch)["task0"]
    return not torch.equal(before, after)


def test_tasks_exchange_information_only_through_the_gates() -> None:
    assert _task0_changes_when_task1_experts_change(isolate=False)
    assert not _task0_changes_when_task1_experts_change(isolate=True)


def test_bad_params_name_the_field() -> None:
    ctx, _ = make_context(2, rows=32)
    with pytest.raises(SpecError, match=r"model.params.variant"):
        build_model("adatt", {"variant": "shared"}, ctx)
    with pytest.raises(SpecError, match=r"shared_experts >= 1"):
        build_model("adatt", {"variant": "general", "shared_experts": 0}, ctx)
