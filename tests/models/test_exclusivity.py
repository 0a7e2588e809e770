"""MMoEEx-style expert exclusivity on MMoE and PLE: excluded experts get exactly zero weight."""

from __future__ import annotations

import pytest
import torch

from recsys_mtl.data.tensors import features_only
from recsys_mtl.errors import SpecError
from recsys_mtl.models import build_model
from recsys_mtl.models.exclusivity import allowed_mask, exclusive_owners
from tests.support.synthetic import make_context

MMOEEX = {"num_experts": 4, "expert_hidden": [16], "tower_hidden": [8], "exclusivity": 0.5}


def test_owners_are_seeded_and_spread_over_tasks() -> None:
    owners = exclusive_owners(8, ["a", "b", "c"], 0.75, seed=1)
    assert owners.count("shared") == 2
    assert sorted(o for o in owners if o != "shared") == ["a", "a", "b", "b", "c", "c"]
    assert owners == exclusive_owners(8, ["a", "b", "c"], 0.75, seed=1)
    assert exclusive_owners(8, ["a", "b"], 0.0, seed=1) == ["shared"] * 8
    mask = allowed_mask(owners, ["a", "b", "c"], "exclusivity")
    assert mask.shape == (3, 8) and int(mask.sum()) == 3 * 2 + 6


def test_mmoe_excluded_experts_get_zero_weight() -> None:
    ctx, table = make_context(2, rows=64)
    model = build_model("mmoe", MMOEEX, ctx)
    model(features_only(table.columns()))
    for gate in model.gates:
        excluded = torch.tensor([o not in ("shared", gate.task) for o in gate.owners])
        assert int(excluded.sum()) == 1  # 2 exclusive experts, one per task: each task loses the other's
        assert bool((gate.last_weights[:, excluded] == 0).all())
        assert bool((gate.last_weights[:, ~excluded] > 0).all())


def test_mmoe_task_output_ignores_the_other_tasks_exclusive_expert() -> None:
    ctx, table = make_context(2, rows=64)
    model = build_model("mmoe", MMOEEX, ctx).eval()
    batch = features_only(table.columns())
    task1_expert = model.gates[0].owners.index("task1")
    with torch.no_grad():
        before = model(batch)
        model.experts.weights[0][task1_expert].add_(0.5)
        after = model(batch)
    assert torch.equal(before["task0"], after["task0"])
    assert not torch.equal(before["task1"], after["task1"])


def test_ple_exclusivity_masks_shared_experts_only() -> None:
    ctx, table = make_context(2, rows=64)
    params = {"task_experts": 1, "shared_experts": 4, "expert_hidden": [16], "exclusivity": 0.5}
    model = build_model("ple", params, ctx)
    model(features_only(table.columns()))
    for level in model.levels:
        for gate in level.task_gates:
            excluded = torch.tensor([o not in ("shared", gate.task) for o in gate.owners])
            assert int(excluded.sum()) == 1 and gate.owners[0] == gate.task  # own expert always visible
            assert bool((gate.last_weights[:, excluded] == 0).all())
        if level.shared_gate is not None:  # the shared gate still reads every expert
            assert bool((level.shared_gate.last_weights > 0).all())


def test_no_exclusivity_keeps_the_state_dict_unchanged() -> None:
    ctx, _ = make_context(2, rows=32)
    assert not any("log_mask" in k for k in build_model("mmoe", {}, ctx).state_dict())


def test_bad_exclusivity_names_the_field() -> None:
    ctx, _ = make_context(3, rows=32)
    with pytest.raises(SpecError, match=r"model.params.exclusivity: tasks \['task2'\] are left with no expert"):
        build_model("mmoe", {"num_experts": 2, "exclusivity": 1.0}, ctx)
    with pytest.raises(SpecError, match=r"model.params.exclusivity: needs one gate per task"):
        build_model("omoe", {"exclusivity": 0.5}, ctx)
    with pytest.raises(SpecError, match=r"model.params.exclusivity"):
        build_model("mmoe", {"exclusivity": 1.5}, ctx)
