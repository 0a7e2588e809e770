"""FeatureEncoder: the fused categorical lookup equals the per-table lookups, values and gradients."""

from __future__ import annotations

import torch

from recsys_mtl.data.preprocess import Layout
from recsys_mtl.nn.encoders import FeatureEncoder


def _layout() -> Layout:
    # three columns, two of them sharing table "a"; one numeric column
    return Layout(
        categorical=[("f0", "a"), ("f1", "b"), ("f2", "a")],
        numeric=["x"],
        tables={"a": (7, 3), "b": (5, 3)},
    )


def test_fused_lookup_matches_per_table_values_and_grads() -> None:
    torch.manual_seed(0)
    enc = FeatureEncoder(_layout())
    assert enc.fused
    batch = {"categorical": torch.tensor([[0, 4, 6], [2, 1, 3], [6, 0, 0]]), "numeric": torch.randn(3, 1)}
    fused = enc(batch)
    per_table = torch.cat([*enc.feature_embeddings(batch), batch["numeric"]], dim=-1)
    torch.testing.assert_close(fused, per_table)

    fused.square().sum().backward()
    grads = {n: p.grad.clone() for n, p in enc.named_parameters()}
    enc.zero_grad()
    per_table.square().sum().backward()
    for n, p in enc.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, msg=n)
    # the shared table got gradient from both of its columns (rows 0, 6 from f0 and 6, 3, 0 from f2)
    assert grads["embeddings.tables.a.weight"][6].abs().sum() > 0


def test_mixed_dims_fall_back_to_per_table() -> None:
    lay = _layout()
    lay.tables["b"] = (5, 2)
    enc = FeatureEncoder(lay)
    assert not enc.fused
    out = enc({"categorical": torch.tensor([[1, 2, 3]]), "numeric": torch.zeros(1, 1)})
    assert out.shape == (1, 3 + 2 + 3 + 1)
