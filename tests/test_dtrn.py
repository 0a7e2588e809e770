"""dtrn: per-task SENet bottoms under any expert model that implements ``task_inputs``."""

from __future__ import annotations

import pytest
import torch

from recsys_mtl.errors import SpecError
from recsys_mtl.models import build_model
from tests.conftest import make_context
from tests.model_checks import (
    assert_batch_independent,
    assert_fit_beats_constant,
    assert_gradients_reach_everything,
    assert_onnx_exports,
    feats,
    learnable_data,
)

MMOE = {"inner": {"name": "mmoe", "params": {"num_experts": 3, "expert_hidden": [16]}}}


@pytest.mark.parametrize("num_tasks", [1, 2, 5])
def test_output_contract(num_tasks: int) -> None:
    ctx, table = make_context(num_tasks, rows=64)
    out = build_model("dtrn", MMOE, ctx)(feats(table))
    assert list(out) == [f"task{k}" for k in range(num_tasks)]
    assert all(v.shape == (64,) for v in out.values())


@pytest.mark.parametrize("inner", ["shared_bottom", "omoe", "mmoe", "ple"])
def test_wraps_expert_models(inner: str) -> None:
    ctx, table = make_context(2, rows=32)
    model = build_model("dtrn", {"inner": {"name": inner}}, ctx)
    assert model.encoder is model.inner.encoder  # one set of shared embeddings
    assert model(feats(table))["task1"].shape == (32,)


def test_task_k_uses_its_own_view() -> None:
    ctx, table = make_context(2, rows=32)
    model = build_model("dtrn", MMOE, ctx).eval()
    batch = feats(table)
    with torch.no_grad():
        before = model(batch)
        model.bottom.w2[1].normal_()  # change task 1's bottom only
        after = model(batch)
    torch.testing.assert_close(before["task0"], after["task0"], atol=0, rtol=0)
    assert not torch.allclose(before["task1"], after["task1"])


def test_refuses_models_without_task_inputs_and_bad_inner_params() -> None:
    ctx, _ = make_context(2, rows=32)
    with pytest.raises(SpecError, match="model.params.inner.name: 'multitab'"):
        build_model("dtrn", {"inner": {"name": "multitab"}}, ctx)
    with pytest.raises(SpecError, match="model.params.inner: .*num_experts"):
        build_model("dtrn", {"inner": {"name": "mmoe", "params": {"num_experts": 0}}}, ctx)


def test_gradients_reach_everything() -> None:
    ctx, table = make_context(3, rows=128)
    model = build_model("dtrn", MMOE, ctx)
    with torch.no_grad():
        model.bottom.w2.normal_()  # W2 starts at 0 (identity bottom), which blocks W1's gradient
    assert_gradients_reach_everything(model, table)


def test_batch_independence() -> None:
    ctx, table = make_context(2, rows=200)
    assert_batch_independent(build_model("dtrn", MMOE, ctx), table)


def test_short_fit_beats_constant() -> None:
    ctx, train, test = learnable_data(2)
    assert_fit_beats_constant(build_model("dtrn", MMOE, ctx), train, test)


def test_onnx_export() -> None:
    ctx, table = make_context(2, rows=64)
    assert_onnx_exports(build_model("dtrn", MMOE, ctx), table)
