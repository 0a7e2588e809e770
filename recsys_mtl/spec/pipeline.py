"""The pipeline file: which spec, which data, which model and balancing, how to train.

Model and balancing parameters stay free-form dicts here; each model / strategy validates its own
typed config (next to its code) when it is built, so this module never lists model names.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Any, Literal, Union
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from recsys_mtl.spec.features import StrictModel


class DataSection(StrictModel):
    """Base of the ``data`` kinds."""

    def inapplicable(self) -> frozenset[str]:
        """Fields that had no effect with these values (left out of a run folder's pipeline.yaml)."""
        return frozenset()


class FilesData(DataSection):
    """Train / validation / test files (CSV, Parquet or Arrow IPC, chosen by extension)."""

    kind: Literal["files"]
    """`files`"""
    train: Path
    """the training file (CSV, Parquet or Arrow IPC, by extension)"""
    valid: Path | None = None
    """the validation file (null: carved from train)"""
    test: Path | None = None
    """the test file (null: carved from train)"""
    split_seed: int = 2018
    """seed of the split that carves the missing validation / test rows from train"""
    valid_fraction: float = Field(0.1, gt=0, lt=1)
    """share of the train file carved out as validation when `valid` is absent"""
    test_fraction: float = Field(0.1, gt=0, lt=1)
    """share of the train file carved out as test when `test` is absent"""

    def inapplicable(self) -> frozenset[str]:
        # nothing is carved from train when both held-out files are given
        return frozenset({"split_seed", "valid_fraction", "test_fraction"}) if self.valid and self.test else frozenset()


class CensusData(DataSection):
    """UCI census-income KDD: train = the .data file; the .test file split 1:1 into valid/test."""

    kind: Literal["census_kdd"]
    """`census_kdd`"""
    path: Path
    """the folder holding census-income.data and census-income.test"""
    split_seed: int = 2018
    """seed of the 1:1 split of the .test file into validation and test"""
    cache_dir: Path | None = Path("data_cache")
    """folder of the decoded Parquet copies of the census files (null: decode them on every read)"""


class SyntheticData(DataSection):
    """Generated multitask data (see :mod:`recsys_mtl.data.synthetic`), cached as Parquet."""

    kind: Literal["synthetic"]
    """`synthetic`"""
    rows: int = Field(20_000, ge=100)
    """rows generated (before the split)"""
    num_tasks: int = Field(2, ge=1)
    """binary tasks generated"""
    task_correlation: float = Field(0.5, ge=-1, le=1)
    """correlation between the tasks (within a group when `task_groups` > 1)"""
    complexity: int = Field(5, ge=0)
    """sine terms per task (non-linearity)"""
    scale: float = Field(1.0, gt=0)
    """weight scale of the generated logits"""
    noise: float = Field(0.1, ge=0)
    """label noise"""
    positive_rate: float = Field(0.3, gt=0, lt=1)
    """share of positive labels per task"""
    task_groups: int = Field(1, ge=1)
    """planted clusters of tasks (1 = none): tasks within a group correlate by task_correlation, across groups by
    group_correlation (see recsys_mtl.data.synthetic)
    """
    group_correlation: float = Field(-0.8, ge=-1, le=1)
    """correlation of tasks across groups (with `task_groups` > 1)"""
    seed: int = 0
    """generator seed (the data is cached per seed and settings)"""
    cache_dir: Path = Path("data_cache")
    """folder of the cached Parquet files"""
    valid_fraction: float = Field(0.15, gt=0, lt=1)
    """share of the rows in the validation split"""
    test_fraction: float = Field(0.15, gt=0, lt=1)
    """share of the rows in the test split"""

    def inapplicable(self) -> frozenset[str]:
        return frozenset({"group_correlation"}) if self.task_groups == 1 else frozenset()

    @model_validator(mode="after")
    def _groups_within_tasks(self) -> "SyntheticData":
        if self.task_groups > self.num_tasks:
            raise ValueError(f"task_groups ({self.task_groups}) must not exceed num_tasks ({self.num_tasks})")
        return self


class SyntheticDriftData(DataSection):
    """Generated data with a time split, drift and long-tail ids (see
    :mod:`recsys_mtl.data.synthetic_drift`), cached as Parquet: train on the earlier periods,
    validate on the next ``valid_periods``, test on the last ``test_periods``."""

    kind: Literal["synthetic_drift"]
    """`synthetic_drift`"""
    rows: int = Field(150_000, ge=100)
    """rows generated over all periods"""
    periods: int = Field(10, ge=3)
    """time periods; the last ones are validation and test"""
    users: int = Field(4000, ge=2)
    """distinct users at the start"""
    items: int = Field(4000, ge=2)
    """distinct items at the start"""
    zipf: float = Field(1.1, gt=0)
    """popularity exponent of the ids: the weight of rank r ∝ r^-zipf (the long tail)"""
    new_id_rate: float = Field(0.2, ge=0, lt=1)
    """share of the ids born after the first period"""
    drift: float = Field(0.6, ge=0)
    """std of each id effect's random-walk step per period (its initial std is 1)"""
    id_scale: float = Field(0.6, ge=0)
    """scale of every id effect in the logits"""
    scenario: Literal["drift", "cold_start"] = "drift"
    """"drift" or "cold_start" (most test users unseen; rating regression + a binary task)"""
    cold_share: float = Field(0.8, ge=0, le=1)
    """cold_start: share of the last period's rows by users first seen then"""
    seed: int = 0
    """generator seed (the data is cached per seed and settings)"""
    cache_dir: Path = Path("data_cache")
    """folder of the cached Parquet files"""
    valid_periods: int = Field(1, ge=1)
    """periods in the validation split (after the training periods)"""
    test_periods: int = Field(1, ge=1)
    """periods in the test split (the last ones)"""

    @model_validator(mode="after")
    def _periods_left_for_train(self) -> "SyntheticDriftData":
        if self.valid_periods + self.test_periods >= self.periods:
            raise ValueError(f"valid_periods + test_periods ({self.valid_periods + self.test_periods}) must leave training periods out of {self.periods}")
        return self


class SyntheticSequencesData(DataSection):
    """Generated behaviour-sequence data (see :mod:`recsys_mtl.data.synthetic_sequences`: targets
    depend on candidate × history), cached as Parquet and split at random with ``split_seed``."""

    kind: Literal["synthetic_sequences"]
    """`synthetic_sequences`"""
    rows: int = Field(40_000, ge=100)
    """rows generated (one candidate item shown to a user each)"""
    users: int = Field(1_000, ge=1)
    """distinct users, each with one behaviour history"""
    items: int = Field(100, ge=2)
    """distinct items (candidates and history entries share them)"""
    categories: int = Field(8, ge=1)
    """hidden item categories the targets depend on (never a feature)"""
    seed: int = 0
    """generator seed"""
    cache_dir: Path = Path("data_cache")
    """folder of the cached Parquet file (named from every generator setting)"""
    split_seed: int = 2018
    """seed of the random train / validation / test split"""
    valid_fraction: float = Field(0.15, gt=0, lt=1)
    """share of the rows for validation"""
    test_fraction: float = Field(0.15, gt=0, lt=1)
    """share of the rows for test"""


class ParquetStreamData(DataSection):
    """Train streamed from a Parquet dataset larger than memory (see :mod:`recsys_mtl.data.streaming`).

    ``train``: a folder of Parquet files, a glob, or one file; read row group by row group,
    preprocessing fitted in a streaming pass. ``valid`` / ``test``: separate files (or folders),
    read into memory.
    """

    kind: Literal["parquet_stream"]
    """`parquet_stream`"""
    train: Path
    """a folder of Parquet files, a glob, or one file, streamed row group by row group"""
    valid: Path
    """the validation file or folder, read into memory"""
    test: Path
    """the test file or folder, read into memory"""
    shuffle_buffer_rows: int = Field(262_144, ge=1)
    """rows shuffled together (a few row groups); bounds memory along with the row group size."""
    num_workers: int = Field(0, ge=0)
    """DataLoader worker processes reading and encoding row groups (0 = in the training process)."""


DataConfig = Annotated[Union[FilesData, CensusData, SyntheticData, SyntheticDriftData, SyntheticSequencesData, ParquetStreamData], Field(discriminator="kind")]


class ComponentConfig(StrictModel):
    """A registered component chosen by name with its own parameters."""

    name: str
    """the registered name"""
    params: dict[str, Any] = {}
    """its parameters (see its table)"""


#: tracking URI schemes MLflow's client accepts (its tracking-store registry; a dialect suffix
#: such as ``postgresql+psycopg2`` is allowed)
MLFLOW_SCHEMES = ("file", "sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks", "databricks-uc", "uc")


class MLflowConfig(StrictModel):
    """MLflow logging of a fit, next to the CSV and TensorBoard logs (needs the ``mlflow`` extra)."""

    tracking_uri: str | None = Field(None, min_length=1)
    """where runs are recorded; default: a SQLite store `<runs_dir>/mlflow.db`"""
    experiment: str | None = Field(None, min_length=1)
    """the MLflow experiment (default: the pipeline's name)"""
    tags: dict[str, str] = {}
    """extra tags on the MLflow run"""

    @field_validator("tracking_uri")
    @classmethod
    def _known_scheme(cls, uri: str | None) -> str | None:
        # refused when the pipeline is read (validate, fit, tune), not when training starts
        scheme = urlsplit(uri).scheme.split("+")[0] if uri else ""
        if len(scheme) > 1 and scheme not in MLFLOW_SCHEMES:  # one letter: a Windows drive, a path
            raise ValueError(f"unsupported scheme {scheme!r} in {uri!r}; MLflow stores are a path or one of "
                             f"{', '.join(s + '://' for s in MLFLOW_SCHEMES)}")
        return uri


class CompileConfig(StrictModel):
    """``torch.compile`` of the model while it trains (see :mod:`recsys_mtl.train.compile`): in place
    (``nn.Module.compile``), so state-dict keys, checkpoints, resume and exports are those of an eager
    run; exports and everything after the fit run the eager model."""

    mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = "default"
    """torch.compile's mode: `default`, `reduce-overhead`, `max-autotune`, `max-autotune-no-cudagraphs` (longer compiles
    for faster kernels)
    """
    dynamic: bool | None = None
    """shape handling: null compiles for the first batch size and once more with a dynamic batch dimension when another size
    comes (the last, smaller batch); true is dynamic from the start; false compiles once per batch size (up to recompile_limit)
    """
    backend: str = "inductor"
    """the torch.compile backend (`inductor`; `aot_eager` traces without generating code, for debugging)"""
    evaluation: bool = False
    """also compile validation and test forwards (another graph, compiled at the first validation); false: they run eagerly"""
    recompile_limit: int = Field(8, ge=1)
    """graphs compiled per code path at most; past it, a new shape runs eagerly instead of compiling again"""
    odd_batches: Literal["eager", "compile"] = "eager"
    """training batches whose row count is not trainer.batch_size (an epoch's last, smaller batch): `eager` runs them
    eagerly (no second graph to compile: 14 s of a cold census first epoch at one thread); `compile` compiles them
    like any other (a dynamic batch dimension with `dynamic: null`, one graph per size with `dynamic: false`)
    """
    options: dict[str, bool | int | float | str] = Field(default_factory=dict)
    """inductor settings for this compile only (torch.compile's `options`: names from `torch._inductor.list_options()`),
    e.g. `{cpp_wrapper: true}`; empty: inductor's defaults. Part of the compiled-graph cache key (a new setting compiles
    anew)
    """


class TrainerConfig(StrictModel):
    max_epochs: int = Field(10, ge=1)
    """passes over the training data at most (early stopping may end sooner)"""
    batch_size: int = Field(1024, ge=1)
    """training rows per step"""
    eval_batch_size: int = Field(8192, ge=1)
    """rows per step in validation, test and prediction"""
    lr: float = Field(1e-3, gt=0)
    """learning rate of the dense optimizer (AdamW)"""
    weight_decay: float = Field(0.0, ge=0)
    """decoupled (AdamW) decay on dense weight matrices only (see recsys_mtl.train.optim)"""
    embedding_optimizer: Literal["auto", "dense", "sparse_adam", "rowwise_adagrad"] = "auto"
    """optimizer of the large embedding tables (recsys_mtl.train.optim): row-sparse updates (``auto`` = ``sparse_adam``, or
    ``rowwise_adagrad``), or ``dense`` (Adam on every row)
    """
    sparse_min_rows: int = Field(100_000, ge=0)
    """tables with at least this many rows get sparse gradients and the sparse optimizer"""
    embedding_lr: float | None = Field(None, gt=0)
    """learning rate of the sparse optimizer (default: ``lr``)"""
    lr_schedule: Literal["constant", "cosine", "onecycle"] = "constant"
    """per-step learning-rate schedule over max_epochs: constant, cosine (warmup + cosine decay), onecycle"""
    warmup_fraction: float = Field(0.0, ge=0, lt=1)
    """share of the steps spent warming up linearly from ~0 to lr"""
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    """cosine / onecycle: the learning rate at the last step, as a share of lr"""
    monitor: str = "val/auc_mean"
    """the validation metric that early stopping and checkpoint selection follow (e.g. `val/auc_mean`, `val/income/auc`)"""
    mode: Literal["min", "max"] = "max"
    """whether `monitor` is better higher (max) or lower (min)"""
    patience: int = Field(3, ge=1)
    """validations without improvement of `monitor` before training stops"""
    val_check_interval: int | None = Field(None, ge=1)
    """validate every this many training batches (counted across epochs) instead of once per epoch: early stopping (patience
    counts validations) and checkpoint selection then happen inside an epoch, for data where the best model comes before the
    first epoch ends (null: per epoch)
    """
    precision: str = "32-true"
    """Lightning precision, e.g. `32-true`, `16-mixed`, `bf16-mixed`"""
    accelerator: str = "auto"
    """Lightning accelerator: auto, cpu, gpu, cuda, ..."""
    devices: int | str = 1
    """devices per machine: a count, or a Lightning device string"""
    num_nodes: int = Field(1, ge=1)
    """machines in a multi-node DDP run (see docs/scaling.md); devices is per machine."""
    strategy: str = "auto"
    """Lightning strategy: auto, ddp, fsdp, ..."""
    seed: int = 42
    """seed of the model's initialisation, the batch order and every random draw in training"""
    deterministic: bool = True
    """ask torch for deterministic algorithms (same seed, same run)"""
    progress_bar: bool = True
    """show Lightning's progress bar"""
    plots: bool = True
    """draw curves.png, reliability.png and diagnostics.png into the run folder; false leaves them out (their data stays in
    logs/metrics.csv, calibration.json, diagnostics.json): matplotlib takes ~0.2 CPU s per picture, most of a short run's
    fixed cost (tuning trials: `tune.trial_overrides: {trainer.plots: false}`)
    """
    gradient_clip_val: float | None = None
    """clip the gradient norm to this value (null: no clipping)"""
    log_every_n_steps: int = Field(50, ge=1)
    """training metrics are logged every this many steps"""
    limit_train_batches: int | None = Field(None, ge=1)
    """train on at most this many batches per epoch (smoke runs, benchmarks on huge streams)"""
    mlflow: MLflowConfig | None = None
    """also log params and metrics to MLflow: ``true`` or ``{tracking_uri, experiment, tags}``"""
    steps_per_execution: int = Field(1, ge=1)
    """optimizer steps per Lightning training step (Keras' name): the loader hands over groups of this many consecutive
    batches (the same batches, rows and order as 1) and one Lightning step runs one optimizer step per batch, so Lightning's
    per-batch machinery (fetch, hooks, progress, logging) runs once per group; the same training as 1
    (recsys_mtl.train.execution). Single-process only (refused with DDP / Ray workers and val_check_interval)
    """
    compile: CompileConfig | None = None
    """torch.compile the model for training: ``true`` or ``{mode, dynamic, backend, evaluation, recompile_limit,
    odd_batches, options}``; null: eager. Compiling takes tens of seconds to minutes before the first step (see docs/benchmarks.md)
    """

    @field_validator("mlflow", "compile", mode="before")
    @classmethod
    def _switch(cls, value: Any) -> Any:
        # ``mlflow: true`` / ``compile: true`` turn it on with the defaults, ``false`` off
        return {} if value is True else None if value is False else value

    @field_validator("monitor")
    @classmethod
    def _monitor_on_validation(cls, monitor: str) -> str:
        if not monitor.startswith("val/"):
            raise ValueError(f"{monitor!r}: model selection must use a validation metric ('val/...')")
        return monitor


#: options of the ``encoder:`` section that were model params before it existed: a pipeline that
#: still has them under ``model.params`` is migrated when read, with a warning
ENCODER_KEYS = ("numeric_embedding", "id_dropout", "standardize_targets", "gbdt_leaves", "cross")


class PipelineConfig(StrictModel):
    name: str = Field(min_length=1)
    """the pipeline's name: names its run folders, its study and its MLflow experiment"""
    spec: Path
    """the feature spec file (relative to the pipeline's folder)"""
    data: DataConfig
    """where the rows come from: one of the `data:` kinds below, chosen by `kind`"""
    model: ComponentConfig
    """the model family (`name`, one of the models above) and its `params`"""
    encoder: dict[str, Any] = {}
    """how features become the model's input (numeric embeddings, id dropout and regularisation, wide part, embedding widths, GBDT
    leaves, cross network, target standardisation): see the `encoder:` table; validated when the model is built"""
    balancing: ComponentConfig = ComponentConfig(name="equal")
    """the task-balancing method (`name`, one of the balancing methods above) and its `params`"""
    rl: ComponentConfig | None = None
    """a reinforcement-learning training mode (`name`, one of the training modes above) and its `params`; none by default"""
    trainer: TrainerConfig = TrainerConfig()
    """how to train: optimisation, early stopping, devices, logging"""
    runs_dir: Path = Path("runs")
    """the folder where run folders are written"""
    calibration: str | None = None
    """post-hoc calibration of binary tasks, fitted on the validation split after training and baked into the export:
    "temperature" or "platt" (see recsys_mtl.train.calibration).
    """
    tune: dict[str, Any] = {}
    """the tuning study: search space and settings (`recsys-mtl tune`, see the `tune:` table)"""
    export: dict[str, Any] = {}
    """reserved for export options; none is read today (export options are command-line flags)"""
    baselines: dict[str, Any] = {}
    """baselines fitted next to the model (`recsys-mtl baseline`, see the `baselines:` table)"""

    @model_validator(mode="before")
    @classmethod
    def _migrate_encoder_options(cls, raw: Any) -> Any:
        # run folders and pipelines written before the encoder section keep loading: their
        # encoder options move from model.params to encoder, with a warning naming each one
        params = raw.get("model", {}).get("params") if isinstance(raw, dict) and isinstance(raw.get("model"), dict) else None
        moved = [k for k in ENCODER_KEYS if isinstance(params, dict) and k in params]
        if not moved:
            return raw
        encoder = dict(raw.get("encoder") or {})
        clash = [k for k in moved if k in encoder]
        if clash:
            raise ValueError(f"model.params.{clash[0]} and encoder.{clash[0]} are both set; the option belongs "
                             "in the encoder section only")
        encoder.update({k: params[k] for k in moved})
        model = {**raw["model"], "params": {k: v for k, v in params.items() if k not in moved}}
        warnings.warn(f"model.params.{', model.params.'.join(moved)}: moved to the pipeline's `encoder:` section "
                      f"(encoder.{moved[0]}, ...); migrated for this run, update the file", FutureWarning, stacklevel=2)
        return {**raw, "model": model, "encoder": encoder}
