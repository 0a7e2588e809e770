"""PLE / CGC: level structure and gate wiring (the shared contract is in test_model_contract.py)."""

from __future__ import annotations

import pytest
import torch

from recsys_mtl.data.tensors import features_only
from recsys_mtl.errors import SpecError
from recsys_mtl.models import build_model
from tests.support.synthetic import make_context

SMALL = {"num_levels": 2, "task_experts": 2, "shared_experts": 2, "expert_hidden": [16], "tower_hidden": [8]}


@pytest.mark.parametrize("levels", [1, 3])
def test_only_inner_levels_have_a_shared_gate(levels: int) -> None:
    ctx, _ = make_context(3, rows=32)
    model = build_model("ple", dict(SMALL, num_levels=levels), ctx)
    assert len(model.levels) == levels
    assert model.levels[-1].shared_gate is None  # the last level feeds no shared experts
    assert all(level.shared_gate is not None for level in model.levels[:-1])


def test_gate_widths_follow_cgc_wiring() -> None:
    ctx, table = make_context(3, rows=32)
    model = build_model("ple", {**SMALL, "task_experts": 2, "shared_experts": 3}, ctx)
    model(features_only(table.columns()))
    first = model.levels[0]
    for t, gate in enumerate(first.task_gates):  # own 2 + shared 3
        assert gate.last_weights.shape == (32, 5)
        assert gate.owners == [f"task{t}"] * 2 + ["shared"] * 3
    assert first.shared_gate.last_weights.shape == (32, 3 * 2 + 3)  # every expert of the level


def test_task_output_ignores_other_tasks_experts_in_cgc() -> None:
    """In one CGC level task 0 reads only its own and the shared experts."""
    ctx, table = make_context(2, rows=32)
    model = build_model("cgc", SMALL | {"num_levels": 1}, ctx).eval()
    batch = features_only(table.columns())
    with torch.no_grad():
        before = model(batch)
        model.levels[0].task_experts[1].weights[0].add_(1.0)  # perturb task 1's experts
        after = model(batch)
    assert torch.equal(before["task0"], after["task0"])
    assert not torch.allclose(before["task1"], after["task1"])


def test_bad_params_name_the_field() -> None:
    ctx, _ = make_context(2, rows=32)
    with pytest.raises(SpecError, match="task_experts \\+ shared_experts"):
        build_model("ple", {"task_experts": 0, "shared_experts": 0}, ctx)
    with pytest.raises(SpecError, match="model.params.num_levels"):
        build_model("cgc", {"num_levels": 2}, ctx)
