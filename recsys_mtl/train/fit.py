"""Fit a pipeline end to end into a run folder.

Layout of a run folder::

    runs/<name>-<time>/
      pipeline.yaml       the pipeline as applied (paths absolute; see run_folder.applied_pipeline)
      spec.yaml           the feature spec it was trained with
      preprocessing.json  fitted preprocessing (vocabularies, statistics)
      checkpoints/        best.ckpt (selected on validation), last.ckpt (for resuming)
      logs/               CSV and TensorBoard logs (and MLflow, to its own store, with trainer.mlflow)
      metrics.json        val and test metrics per task at the best checkpoint, throughput
      curves.png          loss and metrics per task and epoch, train and validation
      drift.json          with --init-from: vocabulary growth, OOV rates, numeric drift
      diagnostics.json    expert sparsity, gate entropy, expert usage per validation (MoE models)
      diagnostics.png     plot of the selected checkpoint's diagnostics
      calibration.json    binary tasks: ECE, predicted/observed ratio, reliability bins per split;
                          the post-hoc calibrator fitted on validation, if configured
      reliability.png     reliability diagram of the selected checkpoint
                          (the three .png files are left out with trainer.plots: false)

Everything that can fail on bad input (spec, data, trainer, model and balancing config) is checked
before the folder is created, and every file is written atomically, so a failure never leaves a
half-written run or touches an earlier one.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, Sequence

import lightning as L
import yaml
from lightning.pytorch.callbacks import EarlyStopping

from recsys_mtl.artifacts import load_checkpoint, write_atomic
from recsys_mtl.balancing import build_balancer
from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.data.sources import DataSource, FramesSource, Splits, TrainInput, data_source
from recsys_mtl.data.tensors import EncodedTable
from recsys_mtl.diagnostics.callback import ExpertDiagnostics
from recsys_mtl.errors import RecsysMTLError
from recsys_mtl.models import build_model
from recsys_mtl.models.base import model_context
from recsys_mtl.spec.features import FeatureSpec
from recsys_mtl.spec.pipeline import PipelineConfig
from recsys_mtl.train.calibration import calibration_report, check_calibrator, write_calibration
from recsys_mtl.train.callbacks import RunCheckpoint, Throughput
from recsys_mtl.train.pipeline_checks import check_pipeline
from recsys_mtl.train.curves import plot_curves
from recsys_mtl.train.datamodule import TableDataModule
from recsys_mtl.train.execution import lightning_arguments
from recsys_mtl.train.incremental import carry_weights, start_from
from recsys_mtl.train.loggers import make_loggers
from recsys_mtl.train.module import MultiTaskModule
from recsys_mtl.train.rl import build_rl_module
from recsys_mtl.train.run_folder import applied_pipeline, check_finite_results, clear_failed, mark_failed

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """Validated inputs of a fit: splits encoded with preprocessing fitted on train only."""

    cfg: PipelineConfig
    spec: FeatureSpec
    preprocessor: Preprocessor
    #: rows in memory, or a ParquetStream for ``parquet_stream`` data (train never held in memory)
    train: TrainInput
    valid: EncodedTable
    test: EncodedTable
    sizes: dict[str, int]


@dataclass
class FitResult:
    run_dir: Path
    metrics: dict[str, Any]


def prepare(
    cfg: PipelineConfig,
    spec: FeatureSpec,
    splits: Splits | None = None,
    preprocessor: Preprocessor | None = None,
    *,
    source: DataSource | None = None,
    train_fraction: float = 1.0,
) -> Prepared:
    """Read the data through its source and encode it; preprocessing is fitted on train unless given.

    ``splits`` (frames already in memory) or ``source`` replace the pipeline's data section;
    ``train_fraction`` < 1 trains on a seeded share of the training input (tuning trials).
    """
    if source is None:
        source = FramesSource(splits) if splits is not None else data_source(cfg.data)
    pre = preprocessor or source.fit_preprocessing(spec)
    return Prepared(
        cfg=cfg,
        spec=spec,
        preprocessor=pre,
        train=source.training(pre, cfg.trainer.batch_size, cfg.trainer.seed, train_fraction),
        valid=pre.transform(source.valid(), "validation split"),
        test=pre.transform(source.test(), "test split"),
        sizes=source.sizes(),
    )


def build_module(prep: Prepared) -> MultiTaskModule:
    """Seeded model + balancer + LightningModule (raises SpecError on bad params)."""
    cfg = prep.cfg
    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    context = model_context(prep.preprocessor.layout, prep.spec.tasks, cfg.encoder)
    model = build_model(cfg.model.name, cfg.model.params, context)
    model.fit_inputs(prep.train, prep.valid)  # e.g. GBDT leaf trees, fitted on the train split (early-stopped on valid)
    balancer = build_balancer(cfg.balancing.name, cfg.balancing.params, model.task_names)
    if cfg.rl is not None:  # a reinforcement-learning training mode (RMTL) around the same model and balancer
        return build_rl_module(cfg.rl.name, cfg.rl.params, model, prep.spec.tasks, balancer, cfg.trainer, prep.train)  # type: ignore[no-any-return]
    return MultiTaskModule(model, prep.spec.tasks, balancer, cfg.trainer)


#: set by the user for multi-node launches (torchrun, SLURM): every process uses this folder,
#: which must be on a filesystem all nodes share (docs/scaling.md).
RUN_DIR_ENV = "RECSYS_MTL_RUN_DIR"
#: Lightning's DDP launcher re-runs the script for local ranks > 0 with this process's
#: environment; through this variable they write into rank 0's run folder, not new ones.
_LAUNCHED_RUN_DIR_ENV = "RECSYS_MTL_LAUNCHED_RUN_DIR"


def run_dir_path(runs_dir: Path, name: str) -> Path:
    """A new run folder's path (not created): ``<runs_dir>/<name>-<time>-<4 hex>``."""
    return runs_dir / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def new_run_dir(runs_dir: Path, name: str) -> Path:
    if pinned := os.environ.get(RUN_DIR_ENV):
        path = Path(pinned)
        path.mkdir(parents=True, exist_ok=True)
        return path
    inherited = os.environ.get(_LAUNCHED_RUN_DIR_ENV)
    if inherited and os.environ.get("LOCAL_RANK", "0") != "0":
        return Path(inherited)
    path = run_dir_path(runs_dir, name)
    path.mkdir(parents=True, exist_ok=False)  # never reuse (and overwrite) an earlier run
    os.environ[_LAUNCHED_RUN_DIR_ENV] = str(path)
    return path


class Placement(Protocol):
    """Where the Trainer's processes come from when an engine, not ``trainer.strategy``, starts them
    (Ray Train's workers: :mod:`recsys_mtl.train.ray_fit`)."""

    def trainer_kwargs(self) -> dict[str, Any]:
        """``L.Trainer`` arguments that replace the pipeline's (strategy, plugins, devices, num_nodes)."""
        ...

    def prepare(self, trainer: L.Trainer) -> L.Trainer:
        """The engine's last word on the built Trainer (e.g. Ray's ``prepare_trainer`` check)."""
        ...


def make_trainer(cfg: PipelineConfig, run_dir: Path, extra_callbacks: list[L.Callback] = (),
                 placement: Placement | None = None) -> tuple[L.Trainer, RunCheckpoint, Throughput]:
    t = cfg.trainer
    checkpoint = RunCheckpoint(
        dirpath=run_dir / "checkpoints", filename="best", monitor=t.monitor, mode=t.mode, save_top_k=1, save_last=True
    )
    throughput = Throughput()
    loggers = make_loggers(cfg, run_dir)
    where: dict[str, Any] = {"devices": t.devices, "num_nodes": t.num_nodes, "strategy": t.strategy}
    if placement is not None:
        where.update(placement.trainer_kwargs())
    trainer = L.Trainer(
        max_epochs=t.max_epochs,
        accelerator=t.accelerator,
        **where,
        precision=t.precision,  # type: ignore[arg-type]
        deterministic=t.deterministic,
        **lightning_arguments(t),  # gradient_clip_val, limit_train_batches (the module's / loader's with groups)
        # every N batches across epochs (Lightning needs check_val_every_n_epoch=None for that);
        # EarlyStopping and ModelCheckpoint then act at each validation, not at epoch ends
        **({"val_check_interval": t.val_check_interval, "check_val_every_n_epoch": None} if t.val_check_interval else {}),
        callbacks=[
            EarlyStopping(monitor=t.monitor, mode=t.mode, patience=t.patience),
            checkpoint,
            throughput,
            # diagnostics.json / .png (drawn by the validation of the selected checkpoint); a no-op for models without experts
            ExpertDiagnostics(run_dir, plot=t.plots),
            *extra_callbacks,
        ],
        logger=loggers,
        default_root_dir=run_dir,
        enable_progress_bar=t.progress_bar and sys.stderr.isatty(),  # no bar spam in CI logs
        enable_model_summary=False,
        log_every_n_steps=t.log_every_n_steps,
    )
    return (placement.prepare(trainer) if placement is not None else trainer), checkpoint, throughput


def fit(
    cfg: PipelineConfig,
    spec: FeatureSpec,
    splits: Splits | None = None,
    resume: Path | None = None,
    *,
    prepared: Prepared | None = None,
    source: DataSource | None = None,
    init_from: Path | None = None,
    extra_callbacks: Sequence[L.Callback] = (),
    evaluate_test: bool = True,
    placement: Placement | None = None,
) -> FitResult:
    """Train into a new run folder, or with ``resume`` continue a run folder from its last checkpoint.

    ``prepared`` reuses already encoded splits (a tuning study encodes once per process);
    ``evaluate_test=False`` never hands the test split to the trainer (tuning trials), so
    metrics.json then has no ``test`` entry. ``init_from`` starts from an earlier run's weights
    with its vocabularies grown by the new data (:mod:`recsys_mtl.train.incremental`). ``placement``
    lets an engine that started this process (Ray Train) supply the strategy and environment.
    """
    check_pipeline(cfg, spec)  # trainer, model and balancing settings, before any data is read
    last, start = None, None
    if resume is not None:
        resume = Path(resume).resolve()
    if prepared is not None:
        prep = replace(prepared, cfg=cfg, spec=spec)
    elif resume is not None:
        last = resume / "checkpoints" / "last.ckpt"
        if not last.is_file():
            raise RecsysMTLError(f"{resume}: no checkpoints/last.ckpt to resume from")
        load_checkpoint(last)  # refused here as data (DataError naming the file), not deep in Lightning
        prep = prepare(cfg, spec, splits, Preprocessor.load(resume / "preprocessing.json", spec), source=source)
    elif init_from is not None:
        source = source or (FramesSource(splits) if splits is not None else data_source(cfg.data))
        start = start_from(init_from, spec, source)
        prep = prepare(cfg, spec, preprocessor=start.preprocessor, source=source)
    else:
        prep = prepare(cfg, spec, splits, source=source)
    module = build_module(prep)  # bad model / balancing params fail here, before any file is written
    check_calibrator(cfg.calibration)
    if start is not None:
        start.drift["new_rows"] = carry_weights(module.model, start.model)
    run_dir = resume or new_run_dir(cfg.runs_dir, cfg.name).resolve()  # Lightning's paths are absolute
    write_atomic(run_dir / "pipeline.yaml", yaml.safe_dump(applied_pipeline(cfg), sort_keys=False))
    write_atomic(run_dir / "spec.yaml", yaml.safe_dump(spec.model_dump(mode="json", exclude_defaults=True), sort_keys=False))
    prep.preprocessor.save(run_dir / "preprocessing.json")
    if start is not None:
        write_atomic(run_dir / "drift.json", json.dumps(start.drift, indent=1))

    try:
        metrics = _train_and_record(cfg, prep, module, run_dir, last, list(extra_callbacks), evaluate_test, placement)
    except BaseException as exc:  # a non-finite loss, a read error mid-epoch, Ctrl-C: never a "complete" folder
        mark_failed(run_dir, exc)
        raise
    clear_failed(run_dir)  # a resumed run that failed before now finished
    return FitResult(run_dir, metrics)


def _train_and_record(cfg: PipelineConfig, prep: Prepared, module: MultiTaskModule, run_dir: Path, last: Path | None,
                      extra_callbacks: list[L.Callback], evaluate_test: bool, placement: Placement | None = None) -> dict[str, Any]:
    """Train, re-evaluate the selected checkpoint, write metrics.json, calibration and curves.

    Results are checked finite before any is written: metrics.json is the last proof a run is complete.
    """
    t = cfg.trainer
    dm = TableDataModule(prep.train, prep.valid, prep.test if evaluate_test else None, t.batch_size, t.eval_batch_size, t.seed)
    trainer, checkpoint, throughput = make_trainer(cfg, run_dir, extra_callbacks, placement)
    started = time.perf_counter()
    trainer.fit(module, datamodule=dm, ckpt_path=last, weights_only=True)
    fit_seconds = time.perf_counter() - started

    best = checkpoint.best_model_path
    # the selected checkpoint is re-evaluated on validation, then the test split is read once
    # with the weights that validation loaded (the module keeps them: no second read of the file)
    val = trainer.validate(module, datamodule=dm, ckpt_path=best, verbose=False, weights_only=True)[0]
    test = None
    if evaluate_test:
        test = trainer.test(module, datamodule=dm, ckpt_path=None, verbose=False, weights_only=True)[0]
    metrics = {
        "pipeline": cfg.name,
        "model": cfg.model.name,
        "balancing": cfg.balancing.name,
        "seed": t.seed,
        "split_sizes": prep.sizes,
        # what export and report load: the file this run selected (best-v1.ckpt after some resumes)
        "best_checkpoint": Path(best).resolve().relative_to(run_dir.resolve()).as_posix() if best else None,
        "best_epoch": checkpoint.epoch_of(best) if best else None,
        "epochs_run": trainer.current_epoch,
        "monitor": {"name": t.monitor, "mode": t.mode, "best": float(checkpoint.best_model_score) if checkpoint.best_model_score is not None else None},
        "val": _strip(val, "val/"),
        **({"test": _strip(test, "test/")} if test is not None else {}),
        "params": sum(p.numel() for p in module.model.parameters()),
        "fit_seconds": round(fit_seconds, 2),
        **throughput.summary(),
    }
    check_finite_results(metrics, run_dir / "metrics.json")
    if trainer.is_global_zero:  # under DDP every rank holds the same synced metrics
        # the module holds the selected checkpoint's weights (validate/test above loaded them)
        calibration = calibration_report(module.model, prep.spec.tasks, prep.valid, prep.test if evaluate_test else None, cfg.calibration)
        check_finite_results(calibration, run_dir / "calibration.json")
        write_calibration(run_dir, calibration, plot=t.plots)
        if t.plots:
            plot_curves(run_dir, last_epoch=trainer.current_epoch - 1)
        write_atomic(run_dir / "metrics.json", json.dumps(metrics, indent=2))  # last: its presence means complete
    return metrics



def _strip(values: dict[str, float], prefix: str) -> dict[str, float]:
    return {k.removeprefix(prefix): round(float(v), 6) for k, v in sorted(values.items())}

