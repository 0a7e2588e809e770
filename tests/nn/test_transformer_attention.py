"""Transformer attention: the precomputed float mask means what the bool mask meant, the default
CPU path (batched matmuls, no attention dropout) equals scaled_dot_product_attention, attention
on selected queries equals the full rows, and MultiTab's optional inter-sample attention is
batch-dependent and refused by the exporter."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from recsys_mtl.data.synthetic import SyntheticConfig, generate
from recsys_mtl.export import ExportError, export_run
from recsys_mtl.models import build_model
from recsys_mtl.models.multitab import multitask_mask
from recsys_mtl.nn.transformer import InterSampleAttention, SelfAttention, additive_mask, attention
from tests.support.synthetic import make_context, synthetic_spec
from tests.support.export import held_out, make_run
from tests.support.model_checks import assert_gradients_reach_everything, feats

SMALL = {"d_token": 16, "n_blocks": 2, "n_heads": 2, "ffn_hidden": 32}


def test_additive_mask_matches_the_masked_softmax() -> None:
    allowed = multitask_mask(2, 3, task_to_task=True, feature_to_task=True)
    mask = additive_mask(allowed)
    assert mask.dtype == torch.float32 and bool((mask[allowed] == 0).all()) and bool(torch.isinf(mask[~allowed]).all())
    torch.manual_seed(0)
    attn = SelfAttention(8, 2)
    x = torch.randn(4, 5, 8)
    # by hand: scores, -inf where not allowed, softmax, weighted values
    q, k, v = attn.qkv(x).view(4, 5, 3, 2, 4).permute(2, 0, 3, 1, 4)
    scores = (q @ k.transpose(-1, -2)) / 2.0 + mask
    by_hand = attn.out((scores.softmax(-1) @ v).transpose(1, 2).reshape(4, 5, 8))
    torch.testing.assert_close(attn(x, mask), by_hand, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="at least one"):
        additive_mask(torch.zeros(2, 2, dtype=torch.bool))


@pytest.mark.parametrize("name", ["multitab", "ft_transformer"])
def test_default_cpu_training_step_takes_the_batched_matmul_path(name: str) -> None:
    ctx, table = make_context(2, rows=64)
    model = build_model(name, SMALL, ctx).train()
    with torch.profiler.profile() as prof:
        sum(v.sum() for v in model(feats(table)).values()).backward()  # type: ignore[union-attr]
    ops = {e.key for e in prof.key_averages()}
    if name == "multitab":  # no dropout anywhere by default (FT-Transformer keeps its FFN dropout)
        assert not any("bernoulli" in op for op in ops)
    assert {"aten::bmm", "aten::_softmax"} <= ops, sorted(ops)
    assert not any(op.startswith("aten::_scaled_dot_product") for op in ops), sorted(ops)


@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize("queries", [None, slice(0, 2), slice(-1, None)])
def test_attention_equals_scaled_dot_product_attention_forward_and_backward(masked: bool, queries: slice | None) -> None:
    torch.manual_seed(0)
    allowed = multitask_mask(2, 5, task_to_task=True, feature_to_task=True)
    mask = additive_mask(allowed) if masked else None
    q, k, v = (torch.randn(3, 2, 7, 4, requires_grad=True) for _ in range(3))
    qs = q if queries is None else q[:, :, queries]
    ms = mask if mask is None or queries is None else mask[queries]
    ours = attention(qs, k, v, ms)
    ref = F.scaled_dot_product_attention(qs, k, v, attn_mask=ms)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-5)
    g = torch.randn_like(ours)
    grads = torch.autograd.grad(ours, (q, k, v), g)
    ref_grads = torch.autograd.grad(ref, (q, k, v), g)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_per_row_key_padding_mask_matches_scaled_dot_product_attention() -> None:
    """A (B, 1, 1, N) mask (each row its own padded keys, as the interest module's) broadcasts."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 2, 6, 4) for _ in range(3))
    padded = torch.tensor([[0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 0], [0, 1, 1, 1, 1, 1]], dtype=torch.bool)
    mask = (padded.float() * -1e9)[:, None, None, :]
    ours = attention(q, k, v, mask)
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-6, rtol=1e-5)
    v2 = v.clone()
    v2[0, :, 4:] += 100.0  # padded keys' values: never read
    torch.testing.assert_close(attention(q, k, v2, mask)[0], ours[0])


def test_self_attention_on_selected_queries_equals_the_full_rows() -> None:
    torch.manual_seed(0)
    attn = SelfAttention(8, 2)
    mask = additive_mask(multitask_mask(2, 5, task_to_task=True, feature_to_task=False))
    x = torch.randn(4, 7, 8)
    full = attn(x, mask)
    torch.testing.assert_close(attn(x, mask, queries=slice(0, 2)), full[:, :2], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(attn(x, None, queries=slice(-1, None)), attn(x)[:, -1:], atol=1e-6, rtol=1e-5)
    padding = torch.zeros(4, 1, 1, 7)
    padding[0, ..., 5:] = -1e9  # a per-row key mask is sliced on its query axis, never on the batch
    torch.testing.assert_close(attn(x, padding, queries=slice(0, 2)), attn(x, padding)[:, :2], atol=1e-6, rtol=1e-5)


def test_inter_sample_attention_mixes_rows() -> None:
    torch.manual_seed(0)
    layer = InterSampleAttention(3, 4, 2, 8)
    x = torch.randn(5, 3, 4)
    out = layer(x)
    changed = x.clone()
    changed[1:] = torch.randn(4, 3, 4)
    assert (layer(changed)[0] - out[0]).abs().max() > 1e-4  # row 0 depends on the others


def test_multitab_row_col_is_batch_dependent_and_row_is_not() -> None:
    ctx, table = make_context(2, rows=64)
    for att_type, dependent in (("row", False), ("row_col", True)):
        torch.manual_seed(0)
        model = build_model("multitab", {**SMALL, "att_type": att_type}, ctx).eval()
        assert model.batch_dependent is dependent
        with torch.no_grad():
            alone = model(feats(table, slice(0, 8)))["task0"]
            within = model(feats(table, slice(0, 32)))["task0"][:8]
        assert bool((alone - within).abs().max() > 1e-5) is dependent
    assert_gradients_reach_everything(model, table)


def test_export_refuses_inter_sample_attention(tmp_path: Path) -> None:
    spec = synthetic_spec(2)
    run = make_run(tmp_path, spec, generate(SyntheticConfig(rows=400, num_tasks=2, seed=1)), "multitab", {**SMALL, "att_type": "row_col"})
    with pytest.raises(ExportError, match="inter-sample attention"):
        export_run(run, tmp_path / "out", test=held_out(50))
    assert not (tmp_path / "out").exists()
