"""``recsys-mtl fit --engine ray``: the library's own Lightning fit inside Ray Train workers.

Ray Train's ``TorchTrainer`` starts ``workers`` processes (Ray actors, on any node of the cluster)
and a gloo (CPU) or NCCL (GPU) process group between them; each runs :func:`recsys_mtl.train.fit.fit`
unchanged except for where its processes come from: :class:`RayPlacement` gives the Trainer
``ray.train.lightning.RayDDPStrategy`` and ``RayLightningEnvironment`` (rank and world size from
Ray's context) and passes it through ``prepare_trainer``. Everything else is the local fit's:

* every worker reads the pipeline's data itself and fits the same (deterministic) preprocessing,
  as every local DDP rank does; training rows are sharded by the data module from the Trainer's
  rank: in-memory splits split by rank, a ``parquet_stream`` dealt by row group over
  ``world_size × num_workers`` shards; validation and test rows once each across ranks;
* one run folder (created by the driver's choice of path, pinned for every worker through
  ``RECSYS_MTL_RUN_DIR``) with the same files: checkpoints, logs and metrics.json written by rank 0
  (pipeline.yaml, spec.yaml and preprocessing.json are written atomically by every rank, identical).
  On a cluster the runs folder must be on a filesystem every node shares.

Fault tolerance: ``FailureConfig(max_failures)``. When a worker dies or raises, Ray stops the
worker group and starts a new one; each new worker finds ``checkpoints/last.ckpt`` in the run
folder and resumes from it (``fit(resume=...)``, the same path as ``fit --resume``). Every failure is
recorded on Ray's controller in the run folder's ``restarts.json`` (which worker, on which node,
the error, the checkpoint the next attempt resumed from) and printed by the CLI; the file exists
only when a worker failed. A deterministic error (bad data, a non-finite loss) fails again on
every attempt and is then raised as the worker raised it.

Ray's own checkpoint reporting (``RayTrainReportCallback``) is not used: the run folder's Lightning
checkpoints are the single copy, as in a local fit. Needs the ``ray`` extra
(``pip install 'recsys-mtl[ray]'``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import lightning as L

from recsys_mtl.artifacts import load_checkpoint, write_atomic
from recsys_mtl.errors import RecsysMTLError
from recsys_mtl.spec.features import FeatureSpec
from recsys_mtl.spec.pipeline import PipelineConfig
from recsys_mtl.train.compile import ray_refusal
from recsys_mtl.train.execution import check_ray
from recsys_mtl.train.pipeline_checks import check_pipeline
from recsys_mtl.train.ray_failures import RESTARTS_FILE, FailureLog, describe_failure, first_line, format_restart, restarts
from recsys_mtl.train.fit import RUN_DIR_ENV, FitResult, fit, run_dir_path

log = logging.getLogger(__name__)

LAST_CHECKPOINT = "checkpoints/last.ckpt"


@dataclass(frozen=True)
class RayOptions:
    """How many Ray Train workers, where, and how many failures to recover from."""

    workers: int = 2
    #: an existing cluster (``ray://host:10001``, ``auto``); None starts a local instance
    address: str | None = None
    #: Ray CPUs each worker holds (the torch threads of a CPU worker)
    cpus_per_worker: float = 1.0
    #: one GPU per worker (NCCL) instead of CPUs only (gloo)
    use_gpu: bool = False
    #: worker-group restarts from the last checkpoint before the fit fails
    max_failures: int = 2
    #: Ray Train's own storage (its controller state; no checkpoints are reported there)
    storage_path: Path | None = None

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise RecsysMTLError(f"--workers must be at least 1, got {self.workers}")
        if self.cpus_per_worker <= 0:
            raise RecsysMTLError(f"--cpus-per-worker must be positive, got {self.cpus_per_worker}")
        if self.max_failures < -1:
            raise RecsysMTLError(f"--max-failures must be -1 (unbounded) or more, got {self.max_failures}")


@dataclass
class RayFitResult(FitResult):
    """A fit's run folder and metrics, and the failures it recovered from (``restarts.json``)."""

    restarts: list[dict[str, Any]] = field(default_factory=list)


class RayPlacement:
    """Trainer arguments for a process started by Ray Train (see :class:`recsys_mtl.train.fit.Placement`)."""

    def __init__(self, strategy: str) -> None:
        # the pipeline's DDP flavour carries over (e.g. ddp_find_unused_parameters_true)
        self.find_unused = "find_unused_parameters_true" in strategy

    def trainer_kwargs(self) -> dict[str, Any]:
        from ray.train.lightning import RayDDPStrategy, RayLightningEnvironment

        return {"strategy": RayDDPStrategy(find_unused_parameters=self.find_unused),
                "plugins": [RayLightningEnvironment()], "devices": "auto", "num_nodes": 1}

    def prepare(self, trainer: L.Trainer) -> L.Trainer:
        from ray.train.lightning import prepare_trainer

        return prepare_trainer(trainer)


def _import_ray() -> Any:
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")  # read when ray.train is first imported (the default from Ray 2.5x)
    try:
        import ray
        import ray.train.lightning  # noqa: F401
        import ray.train.torch  # noqa: F401
    except ImportError as exc:
        raise RecsysMTLError(f"fit --engine ray needs Ray Train ({exc.name or exc} is missing): "
                             "pip install 'recsys-mtl[ray]'") from None
    if not ray.train.is_v2_enabled():  # the failure callback and restart path are V2's
        raise RecsysMTLError("fit --engine ray needs Ray Train V2 (Ray >= 2.43): unset RAY_TRAIN_V2_ENABLED=0")
    return ray


def ray_fit(cfg: PipelineConfig, spec: FeatureSpec, options: RayOptions = RayOptions(), *, resume: Path | None = None,
            init_from: Path | None = None, extra_callbacks: Sequence[L.Callback] = ()) -> RayFitResult:
    """Fit ``cfg`` on ``options.workers`` Ray Train workers into one run folder (or continue ``resume``).

    Settings are checked here before Ray starts; data is read by the workers. ``extra_callbacks`` are
    sent to every worker (they must pickle).
    """
    check_pipeline(cfg, spec)
    ray_refusal(cfg.trainer)  # trainer.compile: single-process only
    check_ray(cfg.trainer)  # trainer.steps_per_execution: single-process only
    ray = _import_ray()
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    if resume is not None:
        run_dir = Path(resume).resolve()
        if not (run_dir / LAST_CHECKPOINT).is_file():
            raise RecsysMTLError(f"{run_dir}: no {LAST_CHECKPOINT} to resume from")
    else:  # created by the workers (fit's own checks come first there), so a refused fit leaves nothing
        run_dir = run_dir_path(Path(cfg.runs_dir).resolve(), cfg.name)
    if not ray.is_initialized():
        # a local instance fits the workers even on a machine with fewer cores (Ray's CPUs are logical)
        init: dict[str, Any] = ({"address": options.address} if options.address else
                                {"num_cpus": max(os.cpu_count() or 1, math.ceil(options.workers * options.cpus_per_worker))})
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False, **init)
    storage = options.storage_path or Path(tempfile.gettempdir()) / "recsys_mtl_ray"
    trainer = _without_idle_dataset_manager(TorchTrainer)(
        _train_worker,
        train_loop_config={"cfg": cfg, "spec": spec, "run_dir": str(run_dir), "init_from": str(init_from) if init_from else None,
                           "callbacks": list(extra_callbacks)},
        torch_config=TorchConfig(backend="nccl" if options.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=options.workers, use_gpu=options.use_gpu,
                                     resources_per_worker={"CPU": options.cpus_per_worker}),
        run_config=RunConfig(name=run_dir.name, storage_path=str(storage), failure_config=FailureConfig(max_failures=options.max_failures),
                             callbacks=[FailureLog(str(run_dir), options.max_failures)]),
    )
    try:
        trainer.fit()
    except Exception as exc:  # ray.train.TrainingFailedError: retries spent, or an error not retried
        raise _fit_error(exc, run_dir) from None
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.is_file():
        raise RecsysMTLError(f"{run_dir}: the Ray workers finished but rank 0 wrote no metrics.json")
    return RayFitResult(run_dir, json.loads(metrics_path.read_text()), restarts(run_dir))


def _without_idle_dataset_manager(trainer_cls: type) -> type:
    """``trainer_cls`` that starts no Ray Data ``DatasetManager`` actor when it is given no datasets.

    Ray Train (2.4x-2.6x) adds its datasets callback to every run, and the callback starts a
    ``DatasetManager`` actor (a process that imports Ray Data: ~2.5 CPU s) at every worker-group
    start, restarts included, even with no datasets to shard: the library's workers read their own
    data. Where Ray's trainer or callback no longer look as expected, ``trainer_cls`` as it is.
    """
    try:
        from ray.train.v2._internal.callbacks import DatasetsCallback
    except ImportError:
        return trainer_cls
    if not callable(getattr(trainer_cls, "_create_default_callbacks", None)):
        return trainer_cls

    class Trainer(trainer_cls):  # type: ignore[valid-type,misc]
        def _create_default_callbacks(self) -> list[Any]:
            callbacks = super()._create_default_callbacks()
            if getattr(self, "datasets", True):  # datasets given (or an unknown trainer): Ray's callbacks as they are
                return callbacks
            return [c for c in callbacks if not isinstance(c, DatasetsCallback)]

    return Trainer


def _train_worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: the library's fit, resumed from the run folder's last checkpoint if any."""
    import ray.train

    run_dir = Path(config["run_dir"])
    os.environ[RUN_DIR_ENV] = str(run_dir)  # every worker (and attempt) writes into this one folder
    cfg: PipelineConfig = config["cfg"]
    last = run_dir / LAST_CHECKPOINT
    resume = run_dir if last.is_file() else None
    if resume is not None and ray.train.get_context().get_world_rank() == 0:
        _note_resume(run_dir, last)
    fit(cfg, config["spec"], resume=resume, init_from=Path(config["init_from"]) if config["init_from"] and resume is None else None,
        extra_callbacks=config["callbacks"], placement=RayPlacement(cfg.trainer.strategy))


def _note_resume(run_dir: Path, last: Path) -> None:
    """Record in the latest failure which checkpoint the new attempt resumes from."""
    records = restarts(run_dir)
    if records and "resumed_from" not in records[-1]:
        ckpt = load_checkpoint(last)
        records[-1]["resumed_from"] = {"checkpoint": LAST_CHECKPOINT, "epoch": ckpt.get("epoch"), "global_step": ckpt.get("global_step")}
        write_atomic(run_dir / RESTARTS_FILE, json.dumps(records, indent=1))


def _fit_error(exc: BaseException, run_dir: Path) -> RecsysMTLError:
    """The error of a failed Ray fit in one line: the first worker's own error, which worker, and what to do."""
    failures: dict[int, BaseException] = getattr(exc, "worker_failures", None) or {}
    own = [(rank, getattr(e, "cause", None) or e) for rank, e in sorted(failures.items()) if not hasattr(e, "health_check_failure")]
    for rank, cause in own:  # the library's own error (bad data, a non-finite loss): as the worker raised it
        if isinstance(cause, RecsysMTLError):
            try:  # the same class (DataError, SpecError...), so callers catch it as from a local fit
                return type(cause)(f"{cause} (Ray worker {rank})")
            except TypeError:  # a subclass with other constructor arguments
                return RecsysMTLError(f"{type(cause).__name__}: {cause} (Ray worker {rank})")
    parts = [describe_failure(rank, e)["what"] for rank, e in sorted(failures.items())] or [first_line(exc)]
    where = f"; the run folder {run_dir} keeps its last checkpoint: fit --engine ray --resume {run_dir}" if (run_dir / LAST_CHECKPOINT).is_file() else ""
    return RecsysMTLError(f"Ray fit failed: {'; '.join(parts)}{where}")


@dataclass(frozen=True)
class RayRefit:
    """``tune --engine ray``: a study's refits fitted by :func:`ray_fit` (``tune(..., refit_fit=RayRefit(options))``)."""

    options: RayOptions

    def __call__(self, cfg: PipelineConfig, spec: FeatureSpec) -> FitResult:
        result = ray_fit(cfg, spec, self.options)
        for record in result.restarts:
            log.warning(format_restart(record))
        return result
