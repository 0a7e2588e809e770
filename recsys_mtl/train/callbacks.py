"""Callbacks: train throughput, the per-epoch reshuffle of the column loader, and checkpointing
that follows a moved run folder."""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from recsys_mtl.artifacts import checkpoint_epoch
from recsys_mtl.errors import RecsysMTLError
from recsys_mtl.train.execution import batch_rows


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
        self.rows += batch_rows(batch)  # a batch, or a group of them (trainer.steps_per_execution)

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


class CheckpointWriteError(RecsysMTLError):
    """A checkpoint could not be written (disk full, file-size limit, permissions)."""


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose restored state follows a run folder that was moved.

    Lightning restores the best score and the kept checkpoints only when the saved ``dirpath``
    equals the current one, but always restores ``best_model_path``: resuming a moved (or copied)
    run folder would forget its best score, save the next best as ``best-v1.ckpt`` beside the
    stale ``best.ckpt``, or select a checkpoint in the old folder. Paths in the saved folder are
    mapped into the current one first.

    It also remembers the epoch of each file it wrote in this process (:meth:`epoch_of`), so the
    run's ``best_epoch`` needs no second read of a checkpoint it has just written.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._state_key: tuple[tuple[Any, ...], str] | None = None
        super().__init__(*args, **kwargs)
        self._saved_epochs: dict[str, int] = {}

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        # a full disk (or a file-size limit) fails inside fsspec with a bare "[Errno 27] File too
        # large"; Lightning's save is atomic, so the previous checkpoint is still whole: say so
        try:
            super()._save_checkpoint(trainer, filepath)
        except OSError as exc:
            self._saved_epochs.pop(filepath, None)
            raise CheckpointWriteError(
                f"{filepath}: cannot write the checkpoint ({exc.strerror or exc}); the previous checkpoints are kept"
            ) from exc
        # the value Lightning's dump_checkpoint wrote as the file's "epoch"
        self._saved_epochs[filepath] = trainer.current_epoch

    def epoch_of(self, filepath: str) -> int:
        """The epoch ``filepath`` was saved at: remembered if this process wrote it, else read from the
        file (a resumed run's best may come from an earlier process)."""
        if filepath in self._saved_epochs:
            return self._saved_epochs[filepath]
        return checkpoint_epoch(filepath)

    @property
    def state_key(self) -> str:
        # the same key as ModelCheckpoint, so checkpoints written by either resume with the other.
        # Lightning reads it at every callback hook it calls (6 a training step, ~11 µs each to
        # build): kept for the settings it is made of, rebuilt when any of them changes
        settings = (self.monitor, self.mode, self._every_n_train_steps, self._every_n_epochs, self._train_time_interval)
        if self._state_key is None or self._state_key[0] != settings:
            self._state_key = (settings, super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1))
        return self._state_key[1]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old, new = state_dict.get("dirpath"), self.dirpath
        if old and new and old != new:
            def move(path: Any) -> Any:
                if isinstance(path, str) and path and Path(path).parent == Path(old):
                    return str(Path(new) / Path(path).name)
                return path

            state_dict = {
                **state_dict,
                "dirpath": new,
                **{k: move(state_dict.get(k, "")) for k in ("best_model_path", "kth_best_model_path", "last_model_path")},
                "best_k_models": {move(k): v for k, v in state_dict.get("best_k_models", {}).items()},
            }
        super().load_state_dict(state_dict)
