"""MultiTab-Net: multitask attention mask, numeric tokens, the shared module (the shared contract
is in test_model_contract.py)."""

from __future__ import annotations

import pytest
import torch

from recsys_mtl.models import build_model
from recsys_mtl.models.multitab import multitask_mask
from recsys_mtl.nn.encoders import FeatureTokenizer
from recsys_mtl.nn.numeric_embeddings import NumericEmbeddingConfig
from tests.support.synthetic import make_context
from tests.support.model_checks import feats

SMALL = {"d_token": 16, "n_blocks": 2, "n_heads": 2, "ffn_hidden": 32}


@pytest.mark.parametrize("num_tasks", [1, 2, 5])
def test_one_token_per_task_in_front_of_the_features(num_tasks: int) -> None:
    ctx, _ = make_context(num_tasks, rows=64)
    model = build_model("multitab", SMALL, ctx)
    assert model.attention_mask.shape == (num_tasks + model.tokenizer.num_tokens,) * 2


def test_mask_matrix() -> None:
    allowed = multitask_mask(3, 2, task_to_task=True, feature_to_task=False)
    expected = torch.tensor(
        [
            [1, 0, 0, 1, 1],
            [0, 1, 0, 1, 1],
            [0, 0, 1, 1, 1],
            [1, 1, 1, 1, 1],
            [1, 1, 1, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(allowed, expected)
    both = multitask_mask(3, 2, task_to_task=True, feature_to_task=True)
    assert not both[3:, :3].any() and both[3:, 3:].all() and torch.equal(both[:3, :3], torch.eye(3, dtype=torch.bool))
    assert multitask_mask(3, 2, False, False).all()


def _task_outputs_after_perturbing(params: dict, k: int) -> tuple[dict, dict]:
    ctx, table = make_context(3, rows=32)
    torch.manual_seed(0)
    model = build_model("multitab", {**SMALL, **params}, ctx).eval()
    batch = feats(table)
    with torch.no_grad():
        before = model(batch)
        # a random direction: a constant shift would vanish in the pre-norm LayerNorms
        model.task_tokens[k] += torch.randn(model.task_tokens.shape[1])
        after = model(batch)
    return before, after


@pytest.mark.parametrize(
    "params",
    [
        {"n_blocks": 1, "mask_task_to_task": True},  # one block: T×T alone isolates the tasks
        {"n_blocks": 3, "mask_task_to_task": True, "mask_feature_to_task": True},  # F×T + T×T at any depth
    ],
)
def test_task_token_cannot_reach_other_tasks_when_masked(params: dict) -> None:
    before, after = _task_outputs_after_perturbing(params, k=1)
    assert not torch.allclose(before["task1"], after["task1"])  # the token matters to its own task
    for j in ("task0", "task2"):
        torch.testing.assert_close(before[j], after[j], atol=0, rtol=0)


@pytest.mark.parametrize(
    "params",
    [
        {"n_blocks": 1, "mask_task_to_task": False},  # unmasked: tasks read each other directly
        {"n_blocks": 2, "mask_task_to_task": True},  # T×T only: reaches task j through feature tokens
    ],
)
def test_task_token_reaches_other_tasks_without_the_full_mask(params: dict) -> None:
    before, after = _task_outputs_after_perturbing(params, k=1)
    assert not torch.allclose(before["task0"], after["task0"])


@pytest.mark.parametrize("kind", ["linear", "periodic"])
def test_numeric_tokens(kind: str) -> None:
    ctx, table = make_context(2, rows=16)
    tok = FeatureTokenizer(ctx.layout, 8, NumericEmbeddingConfig(kind=kind))
    layout = ctx.layout
    n_cat = len(layout.categorical) + len(layout.sequences)
    n_num = len(layout.numeric) + len(layout.indicators)
    tokens = tok(feats(table))
    assert tokens.shape == (16, n_cat + n_num, 8) and tok.num_tokens == n_cat + n_num
    # a numeric token depends on its own column only
    batch = feats(table)
    batch["numeric"] = batch["numeric"].clone()
    batch["numeric"][:, 0] += 1.0
    changed = (tok(batch) - tokens).abs().sum(dim=(0, 2)) > 0
    assert changed.tolist() == [i == n_cat for i in range(n_cat + n_num)]


def test_shared_module_is_the_last_block() -> None:
    ctx, table = make_context(2, rows=16)
    model = build_model("multitab", SMALL, ctx)
    seen = []
    model.shared_module().register_forward_hook(lambda m, i, o: seen.append(o.shape))
    model(feats(table))
    assert seen == [(16, 2, 16)]  # the last block computes the task tokens only


@pytest.mark.parametrize("params", [{"n_blocks": 1}, {"n_blocks": 3, "mask_feature_to_task": True}])
def test_last_block_on_task_tokens_only_equals_the_full_block(params: dict) -> None:
    ctx, table = make_context(3, rows=32)
    torch.manual_seed(0)
    model = build_model("multitab", {**SMALL, **params}, ctx).eval()
    batch = feats(table)
    with torch.no_grad():
        h = torch.cat([model.task_tokens.expand(32, -1, -1), model.tokenizer(batch)], dim=1)
        for block in model.blocks:  # every block over every token, as before the shortcut
            h = block(h, model.attention_mask)
        full = model.towers(list(model.norm(h[:, :3]).unbind(dim=1)))
        out = model(batch)
    for name in model.task_names:
        torch.testing.assert_close(out[name], full[name], atol=1e-5, rtol=1e-5)
