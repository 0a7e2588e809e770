"""dtrn: per-task SENet bottoms under any expert model that implements ``task_inputs``."""

from __future__ import annotations

import pytest
import torch

from recsys_mtl.errors import SpecError
from recsys_mtl.models import build_model
from tests.conftest import make_context
from tests.model_checks import feats

MMOE = {"inner": {"name": "mmoe", "params": {"num_experts": 3, "expert_hidden": [16]}}}


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

