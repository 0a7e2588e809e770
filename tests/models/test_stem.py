"""STEM: shared + per-task embedding tables, AFTB gating (all forward, task-specific backward)."""

from __future__ import annotations

import pytest
import torch

from recsys_mtl.models import build_model
from tests.support.synthetic import make_context
from tests.support.model_checks import feats

PARAMS = {"shared_experts": 2, "task_experts": 2, "expert_hidden": [16]}


@pytest.mark.parametrize("num_tasks", [1, 2, 5])
def test_one_embedding_set_per_task_and_gates_over_every_expert(num_tasks: int) -> None:
    ctx, table = make_context(num_tasks, rows=64)
    model = build_model("stem", PARAMS, ctx)
    model(feats(table))
    assert len(model.task_encoders) == num_tasks
    # task t's gate weighs shared + every task's experts (that it is a distribution: the contract test)
    assert len(model.gates) == num_tasks
    for gate in model.gates:
        assert gate.last_weights.shape == (64, 2 + 2 * num_tasks)


def test_embedding_tables_are_separate() -> None:
    ctx, _ = make_context(2, rows=32)
    model = build_model("stem", PARAMS, ctx)
    ptrs = {t.weight.data_ptr() for enc in [model.encoder, *model.task_encoders] for t in enc.embeddings.tables.values()}
    assert len(ptrs) == 3 * len(model.encoder.embeddings.tables)


def _grads_from_task0(stop_gradient: bool) -> dict[str, bool]:
    ctx, table = make_context(2, rows=128)
    model = build_model("stem", {**PARAMS, "stop_gradient": stop_gradient}, ctx)
    model(feats(table))["task0"].pow(2).mean().backward()
    got = lambda mod: any(p.grad is not None and p.grad.abs().sum() > 0 for p in mod.parameters())  # noqa: E731
    return {
        "shared": got(model.encoder),
        "own": got(model.task_encoders[0]),
        "other": got(model.task_encoders[1]),
        "other_experts": got(model.task_experts[1]),
    }


def test_task_loss_updates_only_shared_and_own_embeddings() -> None:
    grads = _grads_from_task0(stop_gradient=True)
    assert grads == {"shared": True, "own": True, "other": False, "other_experts": False}
    # without the stop-gradient task 0's loss reaches task 1's tables through its experts
    assert _grads_from_task0(stop_gradient=False)["other"]


def test_other_tasks_experts_still_feed_forward() -> None:
    ctx, table = make_context(2, rows=32)
    model = build_model("stem", PARAMS, ctx).eval()
    batch = feats(table)
    with torch.no_grad():
        before = model(batch)["task0"]
        model.task_experts[1].biases[-1].add_(1.0)
        after = model(batch)["task0"]
    assert not torch.allclose(before, after)

