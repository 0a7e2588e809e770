"""HoME: hierarchy mask honoured, the four ablation switches, expert normalisation, parameter
errors (the shared contract is in test_model_contract.py)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from recsys_mtl.data.tensors import features_only
from recsys_mtl.errors import SpecError
from recsys_mtl.models import build_model
from recsys_mtl.models.home import HoMEExperts, SelfGate
from tests.support.synthetic import make_context

SMALL: dict[str, Any] = {"global_experts": 2, "group_experts": 1, "task_experts": 1, "expert_hidden": [16], "tower_hidden": [8], "feature_gate_rank": 4}
GROUPED = SMALL | {"groups": {"g": ["task0", "task1"]}}  # task2 (when present) is in no group
SWITCHES = ["expert_norm", "hierarchy_mask", "feature_gate", "self_gate"]


@pytest.mark.parametrize("levels", [1, 3])
def test_feature_gates_always_self_gates_from_the_second_level(levels: int) -> None:
    ctx, _ = make_context(3, rows=32)
    names = {n for n, _ in build_model("home", GROUPED | {"num_levels": levels}, ctx).named_parameters()}
    assert any("fg_down" in n for n in names) and any("self_gates" in n for n in names) == (levels > 1)


def _last_level_perturbation(params: dict[str, Any], bank: str) -> dict[str, bool]:
    """Which task outputs change when one expert bank of the last level is perturbed."""
    ctx, table = make_context(3, rows=64)
    torch.manual_seed(0)  # the check reads exact equality: independent of the tests run before it
    model = build_model("home", params, ctx)
    batch = features_only(table.columns())
    model(batch)  # BatchNorm statistics
    model.eval()
    with torch.no_grad():
        before = model(batch)
        target = {"task0": model.levels[-1].task_experts[0], "group": model.levels[-1].group_experts[0]}[bank]
        target.weights[0].add_(0.5)
        after = model(batch)
    return {t: not torch.equal(before[t], after[t]) for t in before}


@pytest.mark.parametrize("levels", [1, 2])
def test_hierarchy_mask_hides_outside_experts(levels: int) -> None:
    p = GROUPED | {"num_levels": levels}
    # task0's own experts reach only task0; the group's experts reach its members, not task2
    assert _last_level_perturbation(p, "task0") == {"task0": True, "task1": False, "task2": False}
    assert _last_level_perturbation(p, "group") == {"task0": True, "task1": True, "task2": False}


def test_without_hierarchy_mask_every_task_sees_every_expert() -> None:
    changed = _last_level_perturbation(GROUPED | {"num_levels": 1, "hierarchy_mask": False}, "task0")
    assert all(changed.values())


def test_masked_gate_weights_are_exactly_zero() -> None:
    ctx, table = make_context(3, rows=32)
    model = build_model("home", GROUPED, ctx)
    model(features_only(table.columns()))
    for level in model.levels:
        for gate in level.task_gates:
            allowed = {"shared", gate.task} | ({"group:g"} if gate.task in ("task0", "task1") else set())
            outside = torch.tensor([o not in allowed for o in gate.owners])
            assert bool((gate.last_weights[:, outside] == 0).all()) and bool((gate.last_weights[:, ~outside] > 0).all())


@pytest.mark.parametrize("off", [[s] for s in SWITCHES] + [SWITCHES])
def test_each_part_switches_off(off: list[str]) -> None:
    ctx, table = make_context(3, rows=32)
    on = build_model("home", GROUPED | {"num_levels": 2}, ctx)
    model = build_model("home", GROUPED | {"num_levels": 2} | {s: False for s in off}, ctx)
    out = model(features_only(table.columns()))
    assert all(v.shape == (32,) for v in out.values())
    modules = list(model.modules())
    banks = [m for m in modules if isinstance(m, HoMEExperts)]
    present = {
        "expert_norm": any(b.norm is not None for b in banks),
        "feature_gate": any(b.feature_gate for b in banks),
        "self_gate": any(isinstance(m, SelfGate) for m in modules),
        "hierarchy_mask": any(getattr(m, "log_mask", None) is not None for m in modules),
    }
    assert present == {s: s not in off for s in SWITCHES}
    assert sum(p.numel() for p in model.parameters()) <= sum(p.numel() for p in on.parameters())


def test_expert_normalization_removes_dead_relu_outputs() -> None:
    ctx, table = make_context(2, rows=256)
    batch = features_only(table.columns())
    zero = {}
    for norm in (True, False):
        model = build_model("home", SMALL | {"expert_norm": norm, "num_levels": 1}, ctx)
        model(batch)
        zero[norm] = float((model.levels[0].global_experts.last_output == 0).float().mean())
    assert zero[True] == 0.0 and zero[False] > 0.2  # Swish after BatchNorm vs plain ReLU


def test_bad_groups_name_the_field() -> None:
    ctx, _ = make_context(2, rows=32)
    with pytest.raises(SpecError, match=r"model.params.groups.g: unknown task 'clicks'"):
        build_model("home", {"groups": {"g": ["task0", "clicks"]}}, ctx)
    with pytest.raises(SpecError, match=r"model.params.groups.h: task 'task0' is already in group 'g'"):
        build_model("home", {"groups": {"g": ["task0"], "h": ["task0"]}}, ctx)
    with pytest.raises(SpecError, match=r"task 'task1' has no experts"):
        build_model("home", {"global_experts": 0, "task_experts": 0, "groups": {"g": ["task0"]}}, ctx)
