"""FT-Transformer multitask baseline: one shared CLS token, the numeric embedding option (the
shared contract is in test_model_contract.py)."""

from __future__ import annotations

import torch

from recsys_mtl.models import build_model
from tests.conftest import make_context
from tests.model_checks import feats

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
    model = build_model("ft_transformer", {**SMALL, "numeric_embedding": {"kind": "periodic", "n_frequencies": 4}}, ctx)
    assert type(model.tokenizer.numeric.values).__name__ == "PeriodicEmbeddings"
    assert model(feats(table))["task0"].shape == (16,)
