"""Encoded splits served as whole-batch slices; DDP ranks get disjoint shards."""

from __future__ import annotations

import lightning as L

from recsys_mtl.data.loader import ColumnBatchLoader
from recsys_mtl.data.tensors import EncodedTable


class TableDataModule(L.LightningDataModule):
    def __init__(self, train: EncodedTable, valid: EncodedTable, test: EncodedTable | None, batch_size: int, eval_batch_size: int, seed: int):
        super().__init__()
        self.tables = {"train": train, "valid": valid, "test": test}
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.seed = seed
        self._train_loader: ColumnBatchLoader | None = None

    def _shard(self) -> dict[str, int]:
        trainer = self.trainer
        if trainer is None:
            return {"rank": 0, "world_size": 1}
        return {"rank": trainer.global_rank, "world_size": trainer.world_size}

    def train_dataloader(self) -> ColumnBatchLoader:
        self._train_loader = ColumnBatchLoader(self.tables["train"], self.batch_size, shuffle=True, seed=self.seed, **self._shard())
        return self._train_loader

    def on_train_epoch_start_hook(self, epoch: int) -> None:
        if self._train_loader is not None:
            self._train_loader.set_epoch(epoch)

    def val_dataloader(self) -> ColumnBatchLoader:
        return ColumnBatchLoader(self.tables["valid"], self.eval_batch_size, **self._shard())

    def test_dataloader(self) -> ColumnBatchLoader:
        if self.tables["test"] is None:
            raise RuntimeError("this data module holds no test split")
        return ColumnBatchLoader(self.tables["test"], self.eval_batch_size, **self._shard())
