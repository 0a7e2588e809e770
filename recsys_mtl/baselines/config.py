"""The ``baselines`` section of a pipeline: which baselines to fit, over which seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from recsys_mtl.baselines.compare import DEFAULT_TOLERANCE
from recsys_mtl.errors import SpecError
from recsys_mtl.spec.features import StrictModel
from recsys_mtl.spec.loading import validate


class LightGBMParams(StrictModel):
    """One LightGBM per task; early stopping on the validation split's primary metric."""

    num_leaves: int = Field(63, ge=2)
    learning_rate: float = Field(0.05, gt=0)
    #: row subsample per tree (LightGBM's bagging_fraction, drawn every iteration)
    subsample: float = Field(0.8, gt=0, le=1)
    #: column subsample per tree (feature_fraction)
    colsample: float = Field(0.8, gt=0, le=1)
    min_child_samples: int = Field(20, ge=1)
    lambda_l2: float = Field(0.0, ge=0)
    max_rounds: int = Field(5000, ge=1)
    early_stopping_rounds: int = Field(50, ge=1)
    #: LightGBM threads; None = OpenMP's default (OMP_NUM_THREADS)
    num_threads: int | None = Field(None, ge=1)
    #: any further LightGBM parameter, passed as is
    extra: dict[str, Any] = {}


class PractitionerParams(StrictModel):
    """The practitioner's LightGBM (see :mod:`recsys_mtl.baselines.practitioner`)."""

    #: a categorical with more distinct training values than this is high-cardinality
    high_cardinality: int = Field(100, ge=1)
    #: candidate encodings, chosen per task on validation (``rank`` / ``native_smooth`` change the
    #: high-cardinality columns; ``rank_all`` makes every categorical its frequency rank, always tried)
    encodings: list[str] = Field(["rank", "native_smooth", "rank_all"], min_length=1)
    #: native_smooth: LightGBM's categorical smoothing
    cat_smooth: float = Field(50.0, ge=0)
    cat_l2: float = Field(10.0, ge=0)
    min_data_per_group: int = Field(200, ge=1)
    max_cat_threshold: int = Field(32, ge=1)


class BiasParams(StrictModel):
    """Bias baselines (see :mod:`recsys_mtl.baselines.bias`); strengths chosen on validation."""

    #: regression: L2 strengths of the user and item biases tried
    lambdas: list[float] = Field([0.3, 1.0, 3.0, 10.0, 30.0, 100.0], min_length=1)
    #: alternating least-squares sweeps (user biases, then item biases)
    iterations: int = Field(10, ge=1)
    #: binary: prior strengths (pseudo-rows at the global rate) of the smoothed item rate tried
    priors: list[float] = Field([1.0, 3.0, 10.0, 30.0, 100.0, 300.0], min_length=1)


class RMTGBParams(StrictModel):
    """R-MTGB stage sizes and regularisation (see :mod:`recsys_mtl.baselines.rmtgb`)."""

    shared_rounds: int = Field(2000, ge=0)
    group_rounds: int = Field(100, ge=1)
    task_rounds: int = Field(2000, ge=0)
    theta_lr: float = Field(1.0, gt=0)
    theta_l2: float = Field(1e-3, ge=0)


class BaselinesConfig(StrictModel):
    """``baselines:`` in a pipeline file (all optional)."""

    #: also fit the baselines after every ``fit`` / ``run`` of this pipeline (as ``--baselines`` does)
    enabled: bool = False
    #: the practitioner's LightGBM per task (high-cardinality encoding chosen on validation)
    lightgbm: bool = True
    #: the earlier LightGBM per task: every categorical native, LightGBM's default smoothing
    lightgbm_plain: bool = False
    #: global mean + user + item biases (regression), smoothed item rate (binary); needs the
    #: spec's ``entities``, skipped without them
    bias: bool = True
    single_task: bool = True
    rmtgb: bool = False
    #: seeds of every fitted side (multitask, single-task, LightGBM, R-MTGB); default: trainer.seed
    seeds: list[int] | None = Field(None, min_length=1)
    #: negative-transfer tolerance with one seed (relative; see compare.negative_transfer)
    tolerance: float = Field(DEFAULT_TOLERANCE, ge=0)
    lightgbm_params: LightGBMParams = LightGBMParams()
    rmtgb_params: RMTGBParams = RMTGBParams()
    practitioner: PractitionerParams = PractitionerParams()
    bias_params: BiasParams = BiasParams()


def baselines_config(raw: dict[str, Any], source: str | Path = "pipeline") -> BaselinesConfig:
    """Validate a pipeline's free-form ``baselines`` section; errors name ``baselines.<field>``."""
    try:
        return validate(BaselinesConfig, raw, source)
    except SpecError as exc:  # one line per bad field: name the section too
        raise SpecError(str(exc).replace(f"{source}: ", f"{source}: baselines.")) from None
