"""``lookup``: index_select on dense tables gives ``embedding``'s rows and gradients; sparse tables keep sparse gradients."""

from __future__ import annotations

import torch
from torch import nn

from recsys_mtl.nn.encoders import lookup


def test_dense_lookup_matches_embedding_in_values_and_gradient() -> None:
    torch.manual_seed(0)
    table = nn.Embedding(11, 3)
    ids = torch.randint(0, 11, (6, 5))
    ids[0, :3] = 4  # repeated ids: their gradients must add up
    upstream = torch.randn(6, 5, 3)
    got = lookup(table, ids)
    (got * upstream).sum().backward()
    grad, table.weight.grad = table.weight.grad, None
    want = table(ids)
    (want * upstream).sum().backward()
    assert got.shape == (6, 5, 3)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(grad, table.weight.grad)


def test_sparse_table_keeps_its_sparse_gradient() -> None:
    table = nn.Embedding(11, 3, sparse=True)
    ids = torch.tensor([1, 1, 7])
    lookup(table, ids).sum().backward()
    assert table.weight.grad is not None and table.weight.grad.is_sparse
    torch.testing.assert_close(table.weight.grad.to_dense()[1], torch.full((3,), 2.0))
