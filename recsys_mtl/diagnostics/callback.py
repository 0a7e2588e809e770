"""Lightning callback: expert diagnostics over every validation pass, written to the run folder.

``<run>/diagnostics.json``::

    {"epochs": [{"epoch": 0, "rows": ..., "experts": ..., "gates": ..., "tasks": ...}, ...],
     "best": {"checkpoint": "best.ckpt", ...}}   # re-validation of the selected checkpoint, if any

``<run>/diagnostics.png`` plots ``best`` (unless ``plot`` is off: ``trainer.plots: false``). Models
without experts or gates (e.g. Shared-Bottom) produce nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn

from recsys_mtl.artifacts import write_atomic
from recsys_mtl.diagnostics.plot import plot_diagnostics
from recsys_mtl.diagnostics.stats import DiagnosticsAccumulator, has_experts, scalar_summary


class ExpertDiagnostics(L.Callback):
    """Per validation epoch: diagnostics.json; the PNG is drawn once, when the selected
    checkpoint is validated after fitting (:func:`recsys_mtl.train.fit.fit` always does), not
    per epoch (matplotlib costs about a quarter second per drawing)."""

    def __init__(self, run_dir: str | Path, near_zero: float = 0.01, plot: bool = True):
        self.run_dir = Path(run_dir)
        self.near_zero = near_zero
        self.plot = plot
        self.history: dict[str, Any] = {"epochs": []}
        self._acc: DiagnosticsAccumulator | None = None

    def _model(self, pl_module: L.LightningModule) -> Any:
        return getattr(pl_module, "model", pl_module)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        model = self._model(pl_module)
        active = not trainer.sanity_checking and has_experts(model)
        self._acc = DiagnosticsAccumulator(model, self.near_zero) if active else None

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._acc is not None:
            self._acc.update()

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._acc is None:
            return
        result = self._acc.result()
        self._acc = None
        if not trainer.is_global_zero:
            return
        if trainer.state.fn == TrainerFn.VALIDATING:
            # trainer.validate(ckpt_path=...) does not restore the epoch counter: name the checkpoint
            ckpt = trainer.ckpt_path
            self.history["best"] = result = {"checkpoint": Path(ckpt).name if ckpt else None, **result}
            if self.plot:
                self._plot(result)
        else:
            result = {"epoch": trainer.current_epoch, **result}
            self.history["epochs"].append(result)
            for logger in trainer.loggers:
                logger.log_metrics(scalar_summary(result), step=trainer.global_step)
        self._write()

    def _write(self) -> None:
        write_atomic(self.run_dir / "diagnostics.json", json.dumps(self.history, indent=1))

    def _plot(self, result: dict[str, Any]) -> None:
        title = f"{self.run_dir.name} — checkpoint {result['checkpoint']}, validation split"
        plot_diagnostics(result, self.run_dir / "diagnostics.png", title)
