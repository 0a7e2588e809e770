"""Encoded splits served as whole-batch slices; DDP ranks get disjoint shards."""

from __future__ import annotations

import lightning as L
import torch

from recsys_mtl.data.loader import ColumnBatchLoader
from recsys_mtl.data.streaming import ParquetStream, StreamLoader
from recsys_mtl.data.tensors import EncodedTable


class TableDataModule(L.LightningDataModule):
    def __init__(self, train: EncodedTable | ParquetStream, valid: EncodedTable, test: EncodedTable | None, batch_size: int, eval_batch_size: int, seed: int):
        super().__init__()
        self.tables = {"train": train, "valid": valid, "test": test}
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.seed = seed
        self._train_loader: ColumnBatchLoader | StreamLoader | None = None

    def _shard(self) -> dict[str, int]:
        trainer = self.trainer
        if trainer is None:
            return {"rank": 0, "world_size": 1}
        return {"rank": trainer.global_rank, "world_size": trainer.world_size}

    def train_dataloader(self) -> ColumnBatchLoader | StreamLoader:
        train = self.tables["train"]
        if isinstance(train, ParquetStream):  # larger than memory: row groups read per rank/worker
            self._train_loader = train.train_loader(**self._shard())
        else:
            self._train_loader = ColumnBatchLoader(train, self.batch_size, shuffle=True, seed=self.seed, **self._shard())
        return self._train_loader

    def _eval_loader(self, table: EncodedTable) -> ColumnBatchLoader:
        """Every evaluation row exactly once across ranks: rank r takes rows [r·n/W, (r+1)·n/W).

        Shards may differ by one row (so by one batch); evaluation has no per-step collective, and
        the metrics gather all ranks' rows when they compute.
        """
        shard = self._shard()
        rank, world = shard["rank"], shard["world_size"]
        if world > 1:
            n = len(table)
            table = table.permuted(torch.arange(rank * n // world, (rank + 1) * n // world))
        return ColumnBatchLoader(table, self.eval_batch_size)

    def on_train_epoch_start_hook(self, epoch: int) -> None:
        if self._train_loader is not None:
            self._train_loader.set_epoch(epoch)

    def val_dataloader(self) -> ColumnBatchLoader:
        return self._eval_loader(self.tables["valid"])

    def test_dataloader(self) -> ColumnBatchLoader:
        if self.tables["test"] is None:
            raise RuntimeError("this data module holds no test split")
        return self._eval_loader(self.tables["test"])
