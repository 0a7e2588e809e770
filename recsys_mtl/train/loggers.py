"""The loggers of a fit: CSV and TensorBoard under ``logs/``, and MLflow when configured.

MLflow goes through Lightning's own :class:`~lightning.pytorch.loggers.MLFlowLogger`: the
experiment is ``trainer.mlflow.experiment`` (default: the pipeline's name), the run is named after
the run folder, its params are the run folder's ``pipeline.yaml`` (flattened, ``trainer/lr``),
and its metrics are the names every logger gets (``train/loss``, ``val/<task>/auc``, ``test/...``).
A resumed run folder continues its MLflow run (found by the ``recsys_mtl.run_dir`` tag); MLflow
params cannot change, so a value the resumed pipeline changed (e.g. ``trainer/max_epochs``) is
recorded as the tag ``resumed/<param>``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from recsys_mtl.errors import RecsysMTLError, SpecError
from recsys_mtl.spec.pipeline import PipelineConfig, TrainerConfig
from recsys_mtl.train.run_folder import applied_pipeline

RUN_DIR_TAG = "recsys_mtl.run_dir"
#: Lightning's MLFlowLogger keeps this many characters of a param value
MAX_PARAM_CHARS = 250


def check_loggers(t: TrainerConfig) -> None:
    """Raise :class:`SpecError` when a configured logger's package is missing."""
    if t.mlflow is not None and importlib.util.find_spec("mlflow") is None:
        raise SpecError("trainer.mlflow: MLflow logging needs the mlflow package (pip install 'recsys-mtl[mlflow]')")


def make_loggers(cfg: PipelineConfig, run_dir: Path) -> list[Logger]:
    loggers: list[Logger] = [CSVLogger(run_dir, name="logs", version=""), TensorBoardLogger(run_dir, name="logs", version="tb")]
    if cfg.trainer.mlflow is not None:
        loggers.append(mlflow_logger(cfg, run_dir))
    return loggers


def tracking_uri(cfg: PipelineConfig) -> str:
    """The configured MLflow store, or a SQLite store beside the runs (``<runs_dir>/mlflow.db``)."""
    assert cfg.trainer.mlflow is not None
    return cfg.trainer.mlflow.tracking_uri or f"sqlite:///{(cfg.runs_dir / 'mlflow.db').resolve()}"


def mlflow_assignments(cfg: PipelineConfig) -> dict[str, Any]:
    """Assignments (dotted path → value) that keep runs derived from ``cfg`` under other names and
    run folders (tuning trials, refits) in ``cfg``'s MLflow experiment and store."""
    m = cfg.trainer.mlflow
    if m is None:
        return {}
    return {"trainer.mlflow.experiment": m.experiment or cfg.name, "trainer.mlflow.tracking_uri": tracking_uri(cfg)}


def mlflow_logger(cfg: PipelineConfig, run_dir: Path) -> Logger:
    """Lightning's MLflow logger with the run opened and the pipeline logged as params."""
    check_loggers(cfg.trainer)
    from lightning.pytorch.loggers import MLFlowLogger
    from mlflow.exceptions import MlflowException

    m = cfg.trainer.mlflow
    assert m is not None
    uri = tracking_uri(cfg)
    default_store = m.tracking_uri is None
    experiment = m.experiment or cfg.name
    tags = {**m.tags, RUN_DIR_TAG: str(run_dir), "model": cfg.model.name, "balancing": cfg.balancing.name}
    first = rank_zero_only.rank == 0  # other DDP ranks get Lightning's no-op experiment
    try:
        run_id = _earlier_run(uri, experiment, run_dir) if first else None
        logger = MLFlowLogger(
            experiment_name=experiment,
            run_name=run_dir.name,
            tracking_uri=uri,
            tags=tags,
            # the default store keeps any artifact next to itself, never in the working folder
            artifact_location=(cfg.runs_dir / "mlartifacts").resolve().as_uri() if default_store else None,
            run_id=run_id,
        )
        if first:
            _log_params(logger, run_id, {k: str(v)[:MAX_PARAM_CHARS] for k, v in _flatten(applied_pipeline(cfg)).items()})
    except (MlflowException, OSError, ImportError) as exc:  # ImportError: the SQLite store without SQLAlchemy
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RecsysMTLError(f"trainer.mlflow: cannot log to {uri!r} ({detail[:300]})") from None
    return logger


def _log_params(logger: Logger, run_id: str | None, params: dict[str, str]) -> None:
    """Open the run and log ``params``; a continued run keeps the values it has (MLflow params
    are immutable) and records changed ones as ``resumed/<param>`` tags."""
    client = logger.experiment
    if run_id is not None:
        logged = client.get_run(run_id).data.params
        for key in [k for k in params if k in logged]:
            if logged[key] != params[key]:
                client.set_tag(run_id, f"resumed/{key}", params[key])
            del params[key]
    logger.log_hyperparams(params)


def _earlier_run(uri: str, experiment: str, run_dir: Path) -> str | None:
    """The MLflow run of this run folder, when it is being resumed; None for a new folder."""
    if not (run_dir / "checkpoints" / "last.ckpt").is_file() or "'" in str(run_dir):
        return None
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = client.search_runs([found.experiment_id], filter_string=f"tags.`{RUN_DIR_TAG}` = '{run_dir}'", max_results=1)
    return runs[0].info.run_id if runs else None


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"trainer": {"lr": 0.1}}`` → ``{"trainer/lr": 0.1}``; lists stay values."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = value
    return out
