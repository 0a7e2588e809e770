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
    """leaves per tree"""
    learning_rate: float = Field(0.05, gt=0)
    """shrinkage per boosting round"""
    subsample: float = Field(0.8, gt=0, le=1)
    """row subsample per tree (LightGBM's bagging_fraction, drawn every iteration)"""
    colsample: float = Field(0.8, gt=0, le=1)
    """column subsample per tree (feature_fraction)"""
    min_child_samples: int = Field(20, ge=1)
    """minimum rows in a leaf"""
    lambda_l2: float = Field(0.0, ge=0)
    """L2 regularisation of the leaf values"""
    max_rounds: int = Field(5000, ge=1)
    """boosting rounds at most"""
    early_stopping_rounds: int = Field(50, ge=1)
    """stop after this many rounds without improvement on validation"""
    num_threads: int | None = Field(None, ge=1)
    """LightGBM threads; None = OpenMP's default (OMP_NUM_THREADS)"""
    extra: dict[str, Any] = {}
    """any further LightGBM parameter, passed as is"""


class PractitionerParams(StrictModel):
    """The practitioner's LightGBM (see :mod:`recsys_mtl.baselines.practitioner`)."""

    high_cardinality: int = Field(100, ge=1)
    """a categorical with more distinct training values than this is high-cardinality"""
    encodings: list[str] = Field(["rank", "native_smooth", "rank_all"], min_length=1)
    """candidate encodings, chosen per task on validation (``rank`` / ``native_smooth`` change the
    high-cardinality columns; ``rank_all`` makes every categorical its frequency rank, always tried)"""
    cat_smooth: float = Field(50.0, ge=0)
    """native_smooth: LightGBM's categorical smoothing"""
    cat_l2: float = Field(10.0, ge=0)
    """LightGBM's cat_l2 (L2 in categorical splits)"""
    min_data_per_group: int = Field(200, ge=1)
    """LightGBM's min_data_per_group (rows per categorical group)"""
    max_cat_threshold: int = Field(32, ge=1)
    """LightGBM's max_cat_threshold (categories considered per split)"""


class BiasParams(StrictModel):
    """Bias baselines (see :mod:`recsys_mtl.baselines.bias`); strengths chosen on validation."""

    lambdas: list[float] = Field([0.3, 1.0, 3.0, 10.0, 30.0, 100.0], min_length=1)
    """regression: L2 strengths of the user and item biases tried"""
    iterations: int = Field(10, ge=1)
    """alternating least-squares sweeps (user biases, then item biases)"""
    priors: list[float] = Field([1.0, 3.0, 10.0, 30.0, 100.0, 300.0], min_length=1)
    """binary: prior strengths (pseudo-rows at the global rate) of the smoothed item rate tried"""


class RMTGBParams(StrictModel):
    """R-MTGB stage sizes and regularisation (see :mod:`recsys_mtl.baselines.rmtgb`)."""

    shared_rounds: int = Field(2000, ge=0)
    """boosting rounds of the stage shared by every task"""
    group_rounds: int = Field(100, ge=1)
    """boosting rounds of each task-group stage"""
    task_rounds: int = Field(2000, ge=0)
    """boosting rounds of each task's own stage"""
    theta_lr: float = Field(1.0, gt=0)
    """learning rate of the task-to-group assignment weights θ"""
    theta_l2: float = Field(1e-3, ge=0)
    """L2 regularisation of θ"""


class BaselinesConfig(StrictModel):
    """``baselines:`` in a pipeline file (all optional)."""

    enabled: bool = False
    """also fit the baselines after every ``fit`` / ``run`` of this pipeline (as ``--baselines`` does)"""
    lightgbm: bool = True
    """the practitioner's LightGBM per task (high-cardinality encoding chosen on validation)"""
    lightgbm_plain: bool = False
    """the earlier LightGBM per task: every categorical native, LightGBM's default smoothing"""
    bias: bool = True
    """global mean + user + item biases (regression), smoothed item rate (binary); needs the spec's ``entities``, skipped without
    them
    """
    single_task: bool = True
    """one single-task network per task (the model's family and settings, one task each)"""
    rmtgb: bool = False
    """R-MTGB, multitask gradient boosting (slow; off by default)"""
    seeds: list[int] | None = Field(None, min_length=1)
    """seeds of every fitted side (multitask, single-task, LightGBM, R-MTGB); default: trainer.seed"""
    tolerance: float = Field(DEFAULT_TOLERANCE, ge=0)
    """negative-transfer tolerance with one seed (relative; see compare.negative_transfer)"""
    lightgbm_params: LightGBMParams = LightGBMParams()
    """the LightGBM baselines' settings"""
    rmtgb_params: RMTGBParams = RMTGBParams()
    """R-MTGB's settings"""
    practitioner: PractitionerParams = PractitionerParams()
    """the practitioner's LightGBM: high-cardinality encodings and categorical settings"""
    bias_params: BiasParams = BiasParams()
    """the bias baselines' settings"""


def baselines_config(raw: dict[str, Any], source: str | Path = "pipeline") -> BaselinesConfig:
    """Validate a pipeline's free-form ``baselines`` section; errors name ``baselines.<field>``."""
    try:
        return validate(BaselinesConfig, raw, source)
    except SpecError as exc:  # one line per bad field: name the section too
        raise SpecError(str(exc).replace(f"{source}: ", f"{source}: baselines.")) from None
