"""Encoded splits served as whole-batch slices; DDP ranks get disjoint shards.

In-memory splits also carry the columns the model can take precomputed (GBDT leaves, see
:mod:`recsys_mtl.train.precomputed`), computed once when the trainer asks for the loader, with the
model's trees as they are then (fitted, or restored from the checkpoint being resumed).
"""

from __future__ import annotations

import lightning as L
import torch
from torch import Tensor, nn

from recsys_mtl.data.loader import ColumnBatchLoader
from recsys_mtl.data.streaming import ParquetStream, StreamLoader
from recsys_mtl.data.tensors import EncodedTable
from recsys_mtl.train.precomputed import precomputed_columns


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

    def train_dataloader(self) -> object:
        train = self.tables["train"]
        if isinstance(train, ParquetStream):  # larger than memory: row groups read per rank/worker
            self._train_loader = train.train_loader(**self._shard())
        else:
            self._train_loader = ColumnBatchLoader(
                train, self.batch_size, shuffle=True, seed=self.seed, extra={**self._precomputed(train), **self._train_columns(train)},
                **self._shard(),
            )
        return self._execution(self._train_loader)

    def _execution(self, loader: ColumnBatchLoader | StreamLoader) -> object:
        """The loader as the trainer's module trains on it (groups of batches with
        ``trainer.steps_per_execution`` > 1, see :mod:`recsys_mtl.train.execution`)."""
        hook = getattr(self.trainer.lightning_module, "execution_loader", None) if self.trainer is not None else None
        return hook(loader) if callable(hook) else loader

    def _eval_loader(self, table: EncodedTable) -> ColumnBatchLoader:
        """Every evaluation row exactly once across ranks: rank r takes rows [r·n/W, (r+1)·n/W).

        Shards may differ by one row (so by one batch); evaluation has no per-step collective, and
        the metrics gather all ranks' rows when they compute.
        """
        shard = self._shard()
        rank, world = shard["rank"], shard["world_size"]
        extra = self._precomputed(table)
        if world > 1:
            n = len(table)
            rows = torch.arange(rank * n // world, (rank + 1) * n // world)
            table = table.permuted(rows)
            extra = {k: v[rows] for k, v in extra.items()}
        return ColumnBatchLoader(table, self.eval_batch_size, extra=extra)

    def _precomputed(self, table: EncodedTable) -> dict[str, Tensor]:
        """Precomputed input columns of ``table`` for the trainer's model ({} without a trainer)."""
        module = self.trainer.lightning_module if self.trainer is not None else None
        model = getattr(module, "model", None)
        return precomputed_columns(model, table) if isinstance(model, nn.Module) else {}

    def _train_columns(self, table: EncodedTable) -> dict[str, Tensor]:
        """Columns the trainer's module and callbacks add to training batches (RL transitions, the
        data maps' row indices; {} otherwise)."""
        if self.trainer is None:
            return {}
        columns: dict[str, Tensor] = {}
        for owner in (self.trainer.lightning_module, *self.trainer.callbacks):
            hook = getattr(owner, "train_columns", None)
            if callable(hook):
                columns.update(hook(table))
        return columns

    def on_train_epoch_start_hook(self, epoch: int) -> None:
        if self._train_loader is not None:
            self._train_loader.set_epoch(epoch)

    def val_dataloader(self) -> ColumnBatchLoader:
        return self._eval_loader(self.tables["valid"])

    def test_dataloader(self) -> ColumnBatchLoader:
        if self.tables["test"] is None:
            raise RuntimeError("this data module holds no test split")
        return self._eval_loader(self.tables["test"])
