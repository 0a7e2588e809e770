"""RowSparseAdam (the default sparse table optimizer) against torch.optim.SparseAdam."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from recsys_mtl.train.sparse_adam import RowSparseAdam


def _tables(seed: int) -> tuple[nn.Embedding, nn.Embedding]:
    torch.manual_seed(seed)
    a = nn.Embedding(50, 6, sparse=True)
    b = nn.Embedding(50, 6, sparse=True)
    b.load_state_dict(a.state_dict())
    return a, b


def _step(emb: nn.Embedding, opt: torch.optim.Optimizer, ids: torch.Tensor, target: torch.Tensor) -> None:
    opt.zero_grad()
    (emb(ids) - target).square().sum().backward()
    opt.step()


@pytest.mark.parametrize("maximize", [False, True])
def test_same_weights_and_state_as_torch_sparse_adam_over_steps(maximize: bool) -> None:
    ours_emb, ref_emb = _tables(0)
    ours = RowSparseAdam(ours_emb.parameters(), lr=0.05, maximize=maximize)
    ref = torch.optim.SparseAdam(ref_emb.parameters(), lr=0.05, maximize=maximize)
    gen = torch.Generator().manual_seed(1)
    untouched = torch.arange(40, 50)  # never looked up: must not move
    before = ours_emb.weight.detach()[untouched].clone()
    for _ in range(6):
        ids = torch.randint(0, 40, (64,), generator=gen)  # duplicates: gradients add up per row
        target = torch.randn(64, 6, generator=gen)
        _step(ours_emb, ours, ids, target)
        _step(ref_emb, ref, ids, target)
    torch.testing.assert_close(ours_emb.weight, ref_emb.weight, rtol=1e-5, atol=1e-6)
    p_ours, p_ref = ours_emb.weight, ref_emb.weight
    assert ours.state[p_ours]["step"] == ref.state[p_ref]["step"] == 6
    for key in ("exp_avg", "exp_avg_sq"):
        torch.testing.assert_close(ours.state[p_ours][key], ref.state[p_ref][key], rtol=1e-5, atol=1e-7)
    assert torch.equal(ours_emb.weight.detach()[untouched], before)


def test_checkpoints_move_between_torch_sparse_adam_and_ours() -> None:
    ours_emb, ref_emb = _tables(3)
    ref = torch.optim.SparseAdam(ref_emb.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(4)
    batches = [(torch.randint(0, 50, (32,), generator=gen), torch.randn(32, 6, generator=gen)) for _ in range(4)]
    for ids, target in batches[:2]:
        _step(ref_emb, ref, ids, target)
    ours_emb.load_state_dict(ref_emb.state_dict())
    ours = RowSparseAdam(ours_emb.parameters(), lr=0.05)
    ours.load_state_dict(copy.deepcopy(ref.state_dict()))  # a SparseAdam checkpoint resumes under RowSparseAdam
    for ids, target in batches[2:]:
        _step(ref_emb, ref, ids, target)
        _step(ours_emb, ours, ids, target)
    torch.testing.assert_close(ours_emb.weight, ref_emb.weight, rtol=1e-5, atol=1e-6)


def test_dense_gradients_are_refused() -> None:
    emb = nn.Embedding(5, 2)
    opt = RowSparseAdam(emb.parameters())
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse gradients"):
        opt.step()
