"""The ``tune`` section of a pipeline: a typed search space and the study's settings.

Example (every key but ``space`` has a default)::

    tune:
      study_name: census_mmoe          # default: the pipeline's name
      storage: null                    # default: sqlite:///<runs_dir>/tune/<study>/study.db
      n_trials: 30                     # total over all workers sharing the study
      timeout: null                    # seconds, per worker
      objective: {kind: single, metric: val/income/auc}   # or weighted / multi (below)
      sampler: {name: tpe, params: {seed: 0}}
      pruner: {name: median, params: {n_startup_trials: 5}}
      trial_overrides: {trainer.max_epochs: 3}    # trials only; the final refit uses the pipeline's (a proxy
                                                  # budget may rank trials unlike the refit: prefer pruning)
      train_fraction: 0.2              # trials train on 20% of the train rows (seeded); the refit on all
      enqueue: [{trainer.lr: 0.002}]              # trials run first, after the default
      enqueue_default: true            # trial 0 = the pipeline as written; the refit beats it on every val objective, or is it
      refit_min_gain: 0.0              # validation gain over trial 0 (every objective) a trial needs to be refit
      refit_default: true              # also refit the default: the summary shows default vs tuned on val and test
      space:
        trainer.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
        trainer.batch_size: {type: categorical, choices: [512, 1024, 2048]}
        model.name: {type: categorical, choices: [mmoe, ple]}
        model.params.num_experts: {type: int, low: 2, high: 12, when: {model.name: mmoe}}
        model.params.expert_hidden: {type: categorical, choices: [[64], [128, 64]]}

Multi-fidelity pruning over epochs: ``pruner: {name: hyperband, params: {min_resource: 1,
max_resource: <max_epochs>, reduction_factor: 3}}`` or ``successive_halving`` (ASHA); every
trial reports its validation objective after each epoch through Lightning's pruning callback.

Objectives (:mod:`recsys_mtl.tune.objectives`): ``single`` (one validation metric; default the
trainer's monitor), ``weighted`` (a weighted sum of validation metrics, one number), ``multi`` (one
objective per metric, default every task's first metric; the study returns the Pareto front).

Parameters are addressed by dotted path into the pipeline (``model.*``, ``balancing.*``,
``trainer.*``) and sampled in the order written; ``when`` makes a parameter active only when
earlier parameters (or fixed pipeline values) take the given value (or one of a list of values).
When ``model.name`` / ``balancing.name`` is tuned, pipeline params the sampled family does not
accept are left out of that trial (they belong to another family).

:func:`recsys_mtl.tune.space_checks.check_space` validates every path and every value a trial could take
against the pipeline, its model / balancing registries and the spec's tasks, before any data is
read or trial runs. Parameter types live in :mod:`recsys_mtl.tune.params`, path handling and
sampling in :mod:`recsys_mtl.tune.paths`.
"""

from __future__ import annotations

from typing import Any, Literal

import optuna
from pydantic import Field, ValidationError, field_validator, model_validator

from recsys_mtl.errors import SpecError, format_validation_error
from recsys_mtl.tune.objectives import Objective, SingleObjective
from recsys_mtl.strict import StrictModel
from recsys_mtl.tune.params import Param


class Component(StrictModel):
    """An Optuna sampler or pruner by name, with its keyword arguments."""

    name: str
    """the sampler's or pruner's name"""
    params: dict[str, Any] = {}
    """its keyword arguments (as Optuna names them)"""


SAMPLERS: dict[str, type[optuna.samplers.BaseSampler]] = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "nsga2": optuna.samplers.NSGAIISampler,
    "nsga3": optuna.samplers.NSGAIIISampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "qmc": optuna.samplers.QMCSampler,
    "gp": optuna.samplers.GPSampler,
}
PRUNERS: dict[str, type[optuna.pruners.BasePruner]] = {
    "median": optuna.pruners.MedianPruner,
    "percentile": optuna.pruners.PercentilePruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "threshold": optuna.pruners.ThresholdPruner,
    "patient": optuna.pruners.PatientPruner,
    "wilcoxon": optuna.pruners.WilcoxonPruner,
    "none": optuna.pruners.NopPruner,
}


class TuneConfig(StrictModel):
    space: dict[str, Param] = Field(min_length=1)
    """the search space: dotted pipeline path (`trainer.lr`, `model.params.num_experts`) → a float, int or categorical parameter"""
    objective: Objective = SingleObjective(kind="single")
    """what a trial is scored on: `single`, `weighted` or `multi` (see the objectives below)"""
    n_trials: int | None = Field(20, ge=1)
    """trials in total over all workers sharing the study (null: until `timeout`)"""
    timeout: float | None = Field(None, gt=0)
    """seconds per worker (null: no limit)"""
    study_name: str | None = Field(None, min_length=1)
    """the study's name (default: the pipeline's name)"""
    storage: str | None = None
    """Optuna storage URL (default: `sqlite:///<runs_dir>/tune/<study>/study.db`)"""
    sampler: Component = Component(name="tpe")
    """the Optuna sampler by name (tpe, random, nsga2, nsga3, cmaes, qmc, gp) and its keyword arguments"""
    pruner: Component | None = None
    """the Optuna pruner by name (median, percentile, successive_halving, hyperband, threshold, patient, wilcoxon, none) and its
    keyword arguments; default: median pruning for one objective (Optuna cannot prune multi-objective studies)"""
    trial_overrides: dict[str, Any] = {}
    """pipeline values for trials only (e.g. `{trainer.max_epochs: 3}`); the final refit uses the pipeline's"""
    train_fraction: float = Field(1.0, gt=0, le=1)
    """trials train on this seeded random share of the train rows (validation stays whole); the refit uses all."""
    enqueue: list[dict[str, Any]] = []
    """parameter sets run first (after the default trial), e.g. `[{trainer.lr: 0.002}]`"""
    enqueue_default: bool = True
    """the untuned pipeline is the study's first trial; the refit is a trial that beats it on every validation objective, else it"""
    refit_default: bool = True
    """also refit the default trial (when it is not the chosen one): the chosen trial's refit must then beat it on every
    validation objective by more than `refit_min_gain` (else the default's refit is the result), and the summary shows both"""
    heartbeat_interval: int = Field(30, ge=1)
    """seconds between a worker's heartbeats to an RDB storage (see `grace_period`)"""
    grace_period: int = Field(90, ge=2)
    """seconds without a heartbeat after which a worker's running trial is failed (then retried)"""
    max_retry: int = Field(1, ge=0)
    """times a failed trial is retried"""
    refit_pareto_index: int = Field(0, ge=0)
    """without a default trial: which Pareto-front trial to refit (index into best_trials sorted by the first objective)"""
    refit_min_gain: float = Field(0.0, ge=0)
    """the refit is a trial that beats the default trial on every validation objective by more than this, else the default"""
    plots: Literal["html", "png", "none"] = "html"
    """study plots written after the study: html, png or none"""
    allow_changed_pipeline: bool = False
    """resume a study although the pipeline its trials ran with changed (data, spec, trainer, `trial_overrides`, ...):
    the trials of both pipelines are then ranked together; default: refuse, naming the changed fields"""

    @field_validator("sampler")
    @classmethod
    def _sampler(cls, c: Component) -> Component:
        _build(SAMPLERS, c, "sampler")
        return c

    @field_validator("pruner")
    @classmethod
    def _pruner(cls, c: Component | None) -> Component | None:
        if c is not None:
            _build(PRUNERS, c, "pruner")
        return c

    @model_validator(mode="after")
    def _pruning_needs_one_objective(self) -> "TuneConfig":
        if not self.objective.prunable and self.pruner is not None and self.pruner.name != "none":
            raise ValueError("pruner: Optuna cannot prune multi-objective studies (use pruner: null or name: none)")
        if self.grace_period <= self.heartbeat_interval:
            raise ValueError(f"grace_period ({self.grace_period}) must exceed heartbeat_interval ({self.heartbeat_interval})")
        return self

    def make_sampler(self) -> optuna.samplers.BaseSampler:
        return _build(SAMPLERS, self.sampler, "sampler")

    def make_pruner(self) -> optuna.pruners.BasePruner:
        if self.pruner is None:
            return optuna.pruners.NopPruner() if not self.objective.prunable else optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
        return _build(PRUNERS, self.pruner, "pruner")


def _build(table: dict[str, type[Any]], c: Component, field: str) -> Any:
    if c.name not in table:
        raise ValueError(f"unknown {field} {c.name!r} (available: {', '.join(sorted(table))})")
    try:
        return table[c.name](**c.params)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{c.name} params: {exc}") from None


def parse_tune(raw: dict[str, Any], source: str) -> TuneConfig:
    """Validate the free-form ``tune`` mapping; errors name ``<source>: tune.<field>``."""
    if not raw:
        raise SpecError(f"{source}: tune: missing (add a 'tune:' section with a 'space')")
    try:
        return TuneConfig.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc, source=source, prefix="tune", raw=raw, model=TuneConfig)) from None
