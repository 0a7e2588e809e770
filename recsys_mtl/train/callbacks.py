"""Callbacks: train throughput, and the per-epoch reshuffle of the column loader."""

from __future__ import annotations

import resource
import time
from typing import Any

import lightning as L


def peak_rss_mib() -> float:
    """Peak resident set size of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Throughput(L.Callback):
    """Rows/s over training batches (loading, forward, backward, optimizer step; no validation)."""

    def __init__(self) -> None:
        self.rows = 0
        self.seconds = 0.0
        self.epoch_seconds: list[float] = []
        self._epoch_t0 = self._mark = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dm = trainer.datamodule
        if dm is not None and hasattr(dm, "on_train_epoch_start_hook"):
            dm.on_train_epoch_start_hook(trainer.current_epoch)
        self._epoch_t0 = self._mark = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        # time since the previous batch ended: includes slicing the batch, excludes validation
        now = time.perf_counter()
        self.seconds += now - self._mark
        self._mark = now
        self.rows += batch["labels"].shape[0]

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epoch_seconds.append(time.perf_counter() - self._epoch_t0)

    def summary(self) -> dict[str, float]:
        return {
            "train_rows": self.rows,
            "train_step_seconds": round(self.seconds, 3),
            "train_rows_per_sec": round(self.rows / self.seconds, 1) if self.seconds else 0.0,
            "mean_epoch_seconds": round(sum(self.epoch_seconds) / len(self.epoch_seconds), 3) if self.epoch_seconds else 0.0,
            "peak_rss_mib": round(peak_rss_mib(), 1),
        }
