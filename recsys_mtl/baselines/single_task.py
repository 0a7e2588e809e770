"""The pipeline's own model trained on one task: same family, features, preprocessing and split.

The spec is reduced to the one task, the encoded splits keep that task's label column, and the
fitted preprocessing is the multitask run's (same vocabularies and statistics), so the only
difference from the multitask fit is the set of tasks. Balancing is irrelevant with one task
(``equal``); model selection keeps the pipeline's monitor when it still exists with one task and
otherwise watches the task's own primary validation metric.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from recsys_mtl.baselines.compare import METRIC_SIGN
from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.data.tensors import EncodedTable
from recsys_mtl.errors import DataError
from recsys_mtl.spec.features import FeatureSpec, Task
from recsys_mtl.spec.pipeline import ComponentConfig, PipelineConfig
from recsys_mtl.train.fit import FitResult, Prepared, fit


def single_task_spec(spec: FeatureSpec, task: Task) -> FeatureSpec:
    """``spec`` with only ``task`` (a funnel stage loses its ``after``: there is no earlier task)."""
    raw = spec.model_dump(mode="json", exclude_defaults=True)
    raw["tasks"] = [task.model_copy(update={"after": None}).model_dump(mode="json", exclude_defaults=True)]
    return FeatureSpec.model_validate(raw)


def _one_column(table: EncodedTable, col: int) -> EncodedTable:
    return replace(table, labels=table.labels[:, col : col + 1].contiguous(), weights=table.weights[:, col : col + 1].contiguous())


def single_task_prepared(prep: Prepared, col: int) -> Prepared:
    """The prepared splits of task ``col`` alone, with the multitask run's fitted preprocessing."""
    if not isinstance(prep.train, EncodedTable):
        raise DataError(f"{prep.cfg.name}: single-task baselines need the train split in memory (not a parquet_stream)")
    task = prep.spec.tasks[col]
    spec = single_task_spec(prep.spec, task)
    pre = Preprocessor(spec, prep.preprocessor.tables, prep.preprocessor.numeric, pairs=prep.preprocessor.pairs)
    return replace(prep, spec=spec, preprocessor=pre, train=_one_column(prep.train, col),
                   valid=_one_column(prep.valid, col), test=_one_column(prep.test, col))


def single_task_config(cfg: PipelineConfig, task: Task, seed: int, runs_dir: Path) -> PipelineConfig:
    t = cfg.trainer
    monitor, mode = t.monitor, t.mode
    aggregate_ok = monitor in ("val/loss",) or (monitor == "val/auc_mean" and task.type == "binary")
    if not aggregate_ok and not monitor.startswith(f"val/{task.name}/"):
        metric = task.metric_names[0]
        monitor, mode = f"val/{task.name}/{metric}", "max" if METRIC_SIGN[metric] > 0 else "min"
    trainer = t.model_copy(update={"seed": seed, "monitor": monitor, "mode": mode})
    return cfg.model_copy(update={
        "name": f"{cfg.name}-single-{task.name}", "trainer": trainer, "balancing": ComponentConfig(name="equal"), "runs_dir": runs_dir,
    })


def fit_single_task(prep: Prepared, col: int, seed: int, runs_dir: Path) -> FitResult:
    """Train the pipeline's model on task ``col`` alone into a run folder under ``runs_dir``."""
    one = single_task_prepared(prep, col)
    cfg = single_task_config(prep.cfg, one.spec.tasks[0], seed, runs_dir)
    return fit(cfg, one.spec, prepared=one)
