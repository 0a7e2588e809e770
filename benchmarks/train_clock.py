"""A Lightning callback that clocks training batches only (fetch + forward + backward + step),
not validation, checkpointing or start-up: what ``rows/s`` in the performance tables means."""

from __future__ import annotations

import time
from typing import Any

import lightning as L

from recsys_mtl.train.execution import batch_rows


class TrainClock(L.Callback):
    """Wall and process-CPU seconds of each training epoch's batches, and the rows they held."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.rows = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.wall.append(0.0)
        self.cpu.append(0.0)
        self._w, self._c = time.perf_counter(), time.process_time()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        w, c = time.perf_counter(), time.process_time()
        self.wall[-1] += w - self._w
        self.cpu[-1] += c - self._c
        self._w, self._c = w, c
        self.rows += batch_rows(batch)  # a batch, or a group (trainer.steps_per_execution)

    def rows_per_sec(self) -> tuple[float, float]:
        """(rows per wall second, rows per process-CPU second) over every clocked epoch."""
        return self.rows / sum(self.wall), self.rows / sum(self.cpu)
