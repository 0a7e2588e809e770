"""Fit the baselines next to a multitask model and write the comparison into a folder.

Folder layout (the ``baseline`` command's own folder, or ``<run>/baselines/`` after a fit)::

    baselines.json   per-seed val/test metrics of every side, mean ± std, Δm, negative transfer,
                     R-MTGB's σ and outlier tasks, LightGBM's selected iterations, the features
                     the trees left out (sequence features: ``tree_features_dropped``)
    baselines.md     the per-task table (test split, primary metric)
    multitask/       run folders of the multitask fits (seeds not already fitted)
    single_task/     run folders of the single-task fits, one per task and seed

Every side uses one prepared (encoded) copy of the splits: the same rows, features and fitted
preprocessing. Model selection is on validation only; the test split is scored once per fit.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from recsys_mtl.artifacts import write_atomic
from recsys_mtl.baselines.bias import entity_columns, fit_bias_baselines
from recsys_mtl.baselines.compare import METHOD_LABELS, Results, choices_note, markdown_table, summarize
from recsys_mtl.baselines.config import BaselinesConfig, baselines_config
from recsys_mtl.baselines.lightgbm_tasks import fit_lightgbm_per_task, require_lightgbm
from recsys_mtl.baselines.practitioner import fit_practitioner_lightgbm
from recsys_mtl.baselines.rmtgb import fit_rmtgb
from recsys_mtl.baselines.single_task import fit_single_task
from recsys_mtl.baselines.tabular import TreeColumns
from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.data.tensors import EncodedTable
from recsys_mtl.errors import DataError
from recsys_mtl.spec.features import FeatureSpec
from recsys_mtl.spec.loading import load_spec, validate
from recsys_mtl.spec.pipeline import PipelineConfig
from recsys_mtl.train.fit import Prepared, fit, prepare

log = logging.getLogger(__name__)


@dataclass
class BaselineReport:
    out_dir: Path
    summary: dict[str, Any]
    table: str


def _task_metrics(values: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in values.items() if "/" in k and not k.endswith("/loss")}


def run_baselines(
    cfg: PipelineConfig,
    spec: FeatureSpec,
    bcfg: BaselinesConfig,
    out_dir: Path,
    *,
    prepared: Prepared | None = None,
    multitask: dict[int, dict[str, Any]] | None = None,
) -> BaselineReport:
    """Fit every enabled side for every seed into ``out_dir`` and write the comparison.

    ``multitask`` holds already fitted multitask metrics (metrics.json content) by seed; the
    other seeds are fitted here.
    """
    if bcfg.lightgbm or bcfg.lightgbm_plain or bcfg.rmtgb:
        require_lightgbm()  # fail before any fit, not after an hour of them
    prep = prepared or prepare(cfg, spec)
    if not isinstance(prep.train, EncodedTable):
        raise DataError(f"{cfg.name}: baselines need the train split in memory; a parquet_stream data section is not supported")
    seeds = bcfg.seeds or [cfg.trainer.seed]
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks = spec.tasks
    results: Results = {}
    extra: dict[str, Any] = {"lightgbm_best_iteration": {}, "lightgbm_choice": {}, "rmtgb": {}}

    given = multitask or {}
    columns = TreeColumns.of_preprocessor(prep.preprocessor)
    if columns.dropped and (bcfg.lightgbm or bcfg.rmtgb):
        log.warning("%s: the tree baselines do not see the sequence features %s (no tree column for lists)", cfg.name, ", ".join(columns.dropped))
    report: BaselineReport | None = None
    # seed by seed, rewriting the comparison after each: an interrupted run keeps its finished seeds
    for seed in seeds:
        m = given.get(seed)
        if m is None:
            trainer = cfg.trainer.model_copy(update={"seed": seed})
            m = fit(cfg.model_copy(update={"trainer": trainer, "runs_dir": out_dir / "multitask"}), spec, prepared=prep).metrics
        results.setdefault("multitask", {})[seed] = {"val": _task_metrics(m["val"]), "test": _task_metrics(m["test"])}

        if bcfg.single_task:
            merged: dict[str, dict[str, float]] = {"val": {}, "test": {}}
            for col in range(len(tasks)):
                m = fit_single_task(prep, col, seed, out_dir / "single_task").metrics
                for split in merged:
                    merged[split].update(_task_metrics(m[split]))
            results.setdefault("single_task", {})[seed] = merged

        if bcfg.lightgbm:
            r = fit_practitioner_lightgbm(tasks, prep.train, prep.valid, prep.test, columns, bcfg.lightgbm_params, bcfg.practitioner, seed)
            results.setdefault("lightgbm", {})[seed] = {"val": r["val"], "test": r["test"]}
            extra["lightgbm_best_iteration"][seed] = r["best_iteration"]
            extra["lightgbm_choice"][seed] = r["choice"]
            extra["lightgbm_high_cardinality"] = r["high_cardinality"]

        if bcfg.lightgbm_plain:
            r = fit_lightgbm_per_task(tasks, prep.train, prep.valid, prep.test, columns, bcfg.lightgbm_params, seed)
            results.setdefault("lightgbm_plain", {})[seed] = {"val": r["val"], "test": r["test"]}
            extra.setdefault("lightgbm_plain_best_iteration", {})[seed] = r["best_iteration"]

        if bcfg.bias and spec.entities is not None:
            r = fit_bias_baselines(tasks, prep.train, prep.valid, prep.test, entity_columns(prep.preprocessor.layout, spec.entities), bcfg.bias_params)
            if r["choice"]:
                results.setdefault("bias", {})[seed] = {"val": r["val"], "test": r["test"]}
                extra.setdefault("bias_choice", {})[seed] = r["choice"]

        if bcfg.rmtgb:
            r = fit_rmtgb(tasks, prep.train, prep.valid, prep.test, columns, bcfg.lightgbm_params, bcfg.rmtgb_params, seed)
            results.setdefault("rmtgb", {})[seed] = {"val": r["val"], "test": r["test"]}
            extra["rmtgb"][seed] = {"sigma": r["sigma"], "outlier_tasks": r["outlier_tasks"]}
        report = _write(cfg, bcfg, prep, columns, results, extra, out_dir)
        log.info("baselines: seed %d done\n%s", seed, report.table)
    assert report is not None
    return report


def _write(cfg: PipelineConfig, bcfg: BaselinesConfig, prep: Prepared, columns: TreeColumns, results: Results, extra: dict[str, Any], out_dir: Path) -> BaselineReport:
    summary = summarize(results, prep.spec.tasks, bcfg.tolerance)
    table = markdown_table(summary)
    table += choices_note(extra)
    trees = [m for m in ("lightgbm", "lightgbm_plain", "rmtgb") if m in results]
    if columns.dropped and trees:
        table += f"\n{' and '.join(METHOD_LABELS[m] for m in trees)} left out the sequence features {', '.join(columns.dropped)} (no tree column for lists).\n"
    seeds = sorted(results["multitask"])
    report = {
        "pipeline": cfg.name,
        "model": cfg.model.name,
        "seeds": seeds,
        "split_sizes": prep.sizes,
        "tree_features": columns.names,
        "tree_features_dropped": list(columns.dropped),
        "config": bcfg.model_dump(mode="json"),
        "results": results,
        "summary": summary,
        **extra,
    }
    write_atomic(out_dir / "baselines.json", json.dumps(report, indent=2))
    write_atomic(out_dir / "baselines.md", f"# Baselines: {cfg.name} ({cfg.model.name}), seeds {seeds}\n\n{table}")
    return BaselineReport(out_dir, summary, table)


def baselines_for_run(run_dir: Path, bcfg: BaselinesConfig | None = None) -> BaselineReport:
    """Baselines of a fitted run folder, into ``<run>/baselines/``: the run is the multitask side for
    its seed, and its saved preprocessing is reused."""
    pipeline_path = run_dir / "pipeline.yaml"
    cfg = validate(PipelineConfig, yaml.safe_load(pipeline_path.read_text()), pipeline_path)
    spec = load_spec(run_dir / "spec.yaml")
    bcfg = bcfg or baselines_config(cfg.baselines, pipeline_path)
    prep = prepare(cfg, spec, preprocessor=Preprocessor.load(run_dir / "preprocessing.json", spec))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return run_baselines(cfg, spec, bcfg, run_dir / "baselines", prepared=prep, multitask={int(metrics["seed"]): metrics})
