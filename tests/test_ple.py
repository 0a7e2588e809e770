"""PLE / CGC: contract, gradient flow, gate wiring, batch independence, a short fit, ONNX export."""

from __future__ import annotations

import pytest
import torch

from recsys_mtl.data.tensors import features_only
from recsys_mtl.errors import SpecError
from recsys_mtl.models import build_model
from tests import expert_checks as checks
from tests.conftest import make_context

SMALL = {"num_levels": 2, "task_experts": 2, "shared_experts": 2, "expert_hidden": [16], "tower_hidden": [8]}


@pytest.mark.parametrize("num_tasks", [1, 2, 5])
@pytest.mark.parametrize("name", ["ple", "cgc"])
def test_output_shapes(name: str, num_tasks: int) -> None:
    params = dict(SMALL, num_levels=1) if name == "cgc" else SMALL
    checks.check_shapes(name, params, num_tasks)


@pytest.mark.parametrize("levels", [1, 3])
def test_gradients_reach_every_expert_gate_and_tower(levels: int) -> None:
    model = checks.check_gradients("ple", dict(SMALL, num_levels=levels))
    assert len(model.levels) == levels
    assert model.levels[-1].shared_gate is None  # the last level feeds no shared experts
    assert all(level.shared_gate is not None for level in model.levels[:-1])


def test_gates_are_distributions() -> None:
    checks.check_gates_are_distributions("ple", dict(SMALL, num_levels=3))


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


def test_batch_independence() -> None:
    checks.check_batch_independence("ple", SMALL)


def test_short_fit_beats_constant() -> None:
    checks.check_fit_beats_constant("ple", SMALL)


def test_onnx_export() -> None:
    checks.check_onnx_export("ple", dict(SMALL, exclusivity=0.5))


def test_bad_params_name_the_field() -> None:
    ctx, _ = make_context(2, rows=32)
    with pytest.raises(SpecError, match="task_experts \\+ shared_experts"):
        build_model("ple", {"task_experts": 0, "shared_experts": 0}, ctx)
    with pytest.raises(SpecError, match="model.params.num_levels"):
        build_model("cgc", {"num_levels": 2}, ctx)
