"""FT-Transformer multitask baseline: one shared CLS token, the numeric embedding option (the
shared contract is in test_model_contract.py)."""

from __future__ import annotations

from dataclasses import replace

import torch

from recsys_mtl.models import build_model
from recsys_mtl.nn.encoder_config import EncoderConfig
from tests.support.synthetic import make_context
from tests.support.model_checks import feats

SMALL = {"d_token": 16, "n_blocks": 2, "n_heads": 2, "ffn_hidden": 24}


def test_every_task_reads_the_cls_token_only() -> None:
    ctx, table = make_context(2, rows=32)
    model = build_model("ft_transformer", SMALL, ctx).eval()
    seen: list[torch.Tensor] = []
    model.head.register_forward_hook(lambda mod, inp, out: seen.append(inp[0]))
    model(feats(table))
    assert seen[0].shape == (32, 16)  # (B, d_token): the last (CLS) token, once for all towers
    assert isinstance(model.blocks[0].norm1, torch.nn.Identity)  # no pre-norm on the first block


def test_periodic_numeric_embedding_option() -> None:
    ctx, table = make_context(2, rows=16)
    ctx = replace(ctx, encoder=EncoderConfig(numeric_embedding={"kind": "periodic", "n_frequencies": 4}))
    model = build_model("ft_transformer", SMALL, ctx)
    assert type(model.tokenizer.numeric.values).__name__ == "PeriodicEmbeddings"
    assert model(feats(table))["task0"].shape == (16,)


def test_last_block_on_the_cls_token_only_equals_the_full_block() -> None:
    ctx, table = make_context(2, rows=32)
    torch.manual_seed(0)
    model = build_model("ft_transformer", SMALL, ctx).eval()
    batch = feats(table)
    with torch.no_grad():
        feats_ = model.tokenizer(batch)
        h = torch.cat([feats_, model.cls.expand(32, -1, -1)], dim=1)
        for block in model.blocks:  # every block over every token
            h = block(h)
        full = model.towers([model.head(h[:, -1])] * 2)
        out = model(batch)
    for name in model.task_names:
        torch.testing.assert_close(out[name], full[name], atol=1e-5, rtol=1e-5)
