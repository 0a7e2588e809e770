"""The column loader: every row exactly once per epoch, reshuffled, reproducible, sharded."""

from __future__ import annotations

import torch

from recsys_mtl.data.loader import ColumnBatchLoader
from recsys_mtl.data.tensors import EncodedTable


def table(n: int) -> EncodedTable:
    ids = torch.arange(n)
    return EncodedTable(
        categorical=ids.unsqueeze(1),
        numeric=ids.float().unsqueeze(1),
        sequences={"s": ids.unsqueeze(1).repeat(1, 2)},
        labels=ids.float().unsqueeze(1),
        weights=torch.ones(n, 1),
    )


def epoch_ids(loader: ColumnBatchLoader) -> list[int]:
    out: list[int] = []
    for batch in loader:
        # every column of a batch refers to the same rows
        assert torch.equal(batch["categorical"][:, 0].float(), batch["numeric"][:, 0])
        assert torch.equal(batch["seq.s"][:, 1], batch["categorical"][:, 0])
        out += batch["categorical"][:, 0].tolist()
    return out


def test_every_row_once_per_epoch_and_reshuffled() -> None:
    loader = ColumnBatchLoader(table(1003), batch_size=100, shuffle=True, seed=5)
    assert len(loader) == 11
    first, second = epoch_ids(loader), epoch_ids(loader)
    assert sorted(first) == list(range(1003)) and sorted(second) == list(range(1003))
    assert first != second and first != list(range(1003))


def test_order_is_reproducible_from_seed_and_epoch() -> None:
    a = ColumnBatchLoader(table(500), batch_size=64, shuffle=True, seed=1)
    b = ColumnBatchLoader(table(500), batch_size=64, shuffle=True, seed=1)
    b.set_epoch(0)
    assert epoch_ids(a) == epoch_ids(b)
    a.set_epoch(3)
    b.set_epoch(3)
    assert epoch_ids(a) == epoch_ids(b)


def test_unshuffled_keeps_order_and_last_partial_batch() -> None:
    loader = ColumnBatchLoader(table(10), batch_size=4)
    sizes = [len(b["labels"]) for b in loader]
    assert sizes == [4, 4, 2]
    assert epoch_ids(loader) == list(range(10))


def test_drop_last() -> None:
    loader = ColumnBatchLoader(table(10), batch_size=4, drop_last=True)
    assert len(loader) == 2 and len(epoch_ids(loader)) == 8


def test_ranks_get_disjoint_equal_shards() -> None:
    shards = [epoch_ids(ColumnBatchLoader(table(101), 16, shuffle=True, seed=3, rank=r, world_size=3)) for r in range(3)]
    assert all(len(s) == 33 for s in shards)
    union = set().union(*map(set, shards))
    assert len(union) == 99 and union <= set(range(101))


def test_shuffled_batches_are_the_slices_of_the_epochs_permutation() -> None:
    # the definition the per-batch gather keeps: batch b = rows order[b·size : (b+1)·size] of every column
    t = table(301)
    extra = {"x": torch.arange(301) * 10}
    for rank in (0, 1):
        loader = ColumnBatchLoader(t, batch_size=64, shuffle=True, seed=7, rank=rank, world_size=2, extra=extra)
        for epoch in range(2):
            order = torch.randperm(301, generator=torch.Generator().manual_seed(7 + epoch))[rank * 150 : (rank + 1) * 150]
            columns = {**t.columns(), **extra}
            batches = list(loader)
            assert [len(b["labels"]) for b in batches] == [64, 64, 22]
            for b, batch in enumerate(batches):
                rows = order[b * 64 : (b + 1) * 64]
                assert batch.keys() == columns.keys()
                for k, v in columns.items():
                    assert torch.equal(batch[k], v[rows]), k
