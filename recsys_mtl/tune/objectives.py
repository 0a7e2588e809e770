"""What a study optimises: each objective kind knows its metrics, directions, trial monitor and values.

``single`` (one validation metric; default the trainer's monitor), ``weighted`` (a weighted sum of
validation metrics, one number), ``multi`` (one objective per metric, default every task's first
metric; the study returns the Pareto front). A new kind is one class here plus its entry in
:data:`Objective`.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Union

import lightning as L
import torch
from pydantic import Field, field_validator, model_validator

from recsys_mtl.spec.features import FeatureSpec
from recsys_mtl.spec.pipeline import PipelineConfig
from recsys_mtl.strict import StrictModel

Direction = Literal["maximize", "minimize"]
_MINIMIZED = ("loss", "logloss", "rmse", "mae")
#: validation metric holding a weighted objective's sum, seen by checkpointing, early stopping and pruning
WEIGHTED_KEY = "val/tune_objective"


def default_direction(metric: str) -> Direction:
    return "minimize" if metric.rsplit("/", 1)[-1] in _MINIMIZED else "maximize"


def _val_metric(metric: str) -> str:
    if not metric.startswith("val/"):
        raise ValueError(f"{metric!r}: a study may only see validation metrics ('val/...')")
    return metric


def _mode(direction: Direction) -> str:
    return "max" if direction == "maximize" else "min"


class _Objective(StrictModel):
    """The behaviour every objective kind provides to the study."""

    #: whether Optuna can prune the study (it cannot prune multi-objective studies)
    prunable: ClassVar[bool] = True

    def objective_metrics(self, cfg: PipelineConfig, spec: FeatureSpec) -> list[str]:
        """Validation metrics the objective reads, e.g. ``["val/income/auc"]``."""
        raise NotImplementedError

    def objective_directions(self, cfg: PipelineConfig, spec: FeatureSpec) -> list[Direction]:
        """One direction per value a trial returns."""
        raise NotImplementedError

    def value_names(self, metrics: list[str]) -> list[str]:
        """Column name per value a trial returns (summary and table)."""
        return list(metrics)

    def trial_monitor(self, metrics: list[str], directions: list[Direction]) -> tuple[dict[str, Any], str | None]:
        """Trainer monitor / mode overrides for checkpoint selection, and the metric the pruner watches."""
        return {}, None

    def trial_callbacks(self) -> list[L.Callback]:
        """Extra Lightning callbacks a trial's fit needs."""
        return []

    def trial_values(self, val: dict[str, float], metrics: list[str]) -> list[float]:
        """A trial's objective value(s) from its validation metrics (keys without the ``val/`` prefix)."""
        return [val[m.removeprefix("val/")] for m in metrics]


class SingleObjective(_Objective):
    """One validation metric (default: the trainer's monitor, in its mode)."""

    kind: Literal["single"]
    """`single`"""
    metric: str | None = None
    """the validation metric (default: the trainer's monitor)"""
    direction: Direction | None = None
    """maximize or minimize (default: the metric's natural direction)"""

    _check = field_validator("metric")(lambda cls, v: v if v is None else _val_metric(v))

    def objective_metrics(self, cfg: PipelineConfig, spec: FeatureSpec) -> list[str]:
        return [self.metric or cfg.trainer.monitor]

    def objective_directions(self, cfg: PipelineConfig, spec: FeatureSpec) -> list[Direction]:
        if self.direction is not None:
            return [self.direction]
        if self.metric is None or self.metric == cfg.trainer.monitor:
            return ["maximize" if cfg.trainer.mode == "max" else "minimize"]
        return [default_direction(self.metric)]

    def trial_monitor(self, metrics: list[str], directions: list[Direction]) -> tuple[dict[str, Any], str | None]:
        return {"trainer.monitor": metrics[0], "trainer.mode": _mode(directions[0])}, metrics[0]


class WeightedObjective(_Objective):
    """Σ weight · metric over validation metrics, one number; pruning watches the sum."""

    kind: Literal["weighted"]
    """`weighted`"""
    weights: dict[str, float] = Field(min_length=1)
    """validation metric → its weight in the sum"""
    direction: Direction = "maximize"
    """maximize or minimize the weighted sum"""

    @field_validator("weights")
    @classmethod
    def _val(cls, weights: dict[str, float]) -> dict[str, float]:
        for metric in weights:
            _val_metric(metric)
        return weights

    def objective_metrics(self, cfg: PipelineConfig, spec: FeatureSpec) -> list[str]:
        return list(self.weights)

    def objective_directions(self, cfg: PipelineConfig, spec: FeatureSpec) -> list[Direction]:
        return [self.direction]

    def value_names(self, metrics: list[str]) -> list[str]:
        return ["weighted_sum"]

    def trial_monitor(self, metrics: list[str], directions: list[Direction]) -> tuple[dict[str, Any], str | None]:
        return {"trainer.monitor": WEIGHTED_KEY, "trainer.mode": _mode(directions[0])}, WEIGHTED_KEY

    def trial_callbacks(self) -> list[L.Callback]:
        return [_WeightedSum(self.weights)]

    def trial_values(self, val: dict[str, float], metrics: list[str]) -> list[float]:
        return [sum(w * val[k.removeprefix("val/")] for k, w in self.weights.items())]


class MultiObjective(_Objective):
    """One objective per metric (default: each task's first metric); the result is a Pareto front.

    Checkpoint selection stays on the pipeline's own monitor; nothing is pruned.
    """

    prunable: ClassVar[bool] = False

    kind: Literal["multi"]
    """`multi`"""
    metrics: list[str] = []
    """one objective per validation metric (default: every task's first metric); the study returns the Pareto front"""
    directions: list[Direction] = []
    """one direction per metric (default: each metric's natural direction)"""

    @model_validator(mode="after")
    def _shape(self) -> "MultiObjective":
        for metric in self.metrics:
            _val_metric(metric)
        if self.directions and len(self.directions) != len(self.metrics):
            raise ValueError(f"directions: {len(self.directions)} given for {len(self.metrics)} metrics")
        return self

    def objective_metrics(self, cfg: PipelineConfig, spec: FeatureSpec) -> list[str]:
        return list(self.metrics) or [f"val/{t.name}/{t.metric_names[0]}" for t in spec.tasks]

    def objective_directions(self, cfg: PipelineConfig, spec: FeatureSpec) -> list[Direction]:
        return list(self.directions) or [default_direction(m) for m in self.objective_metrics(cfg, spec)]


Objective = Annotated[Union[SingleObjective, WeightedObjective, MultiObjective], Field(discriminator="kind")]


class _WeightedSum(L.Callback):
    """Puts Σ w·metric into the validation metrics so checkpointing, early stopping and pruning see it."""

    def __init__(self, weights: dict[str, float]):
        self.weights = weights

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        if all(k in metrics for k in self.weights):
            metrics[WEIGHTED_KEY] = torch.tensor(sum(w * float(metrics[k]) for k, w in self.weights.items()))
