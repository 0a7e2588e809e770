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
    train: Path
    valid: Path | None = None
    test: Path | None = None
    #: when valid/test are absent, they are carved from train with this seed and these fractions.
    split_seed: int = 2018
    valid_fraction: float = Field(0.1, gt=0, lt=1)
    test_fraction: float = Field(0.1, gt=0, lt=1)

    def inapplicable(self) -> frozenset[str]:
        # nothing is carved from train when both held-out files are given
        return frozenset({"split_seed", "valid_fraction", "test_fraction"}) if self.valid and self.test else frozenset()


class CensusData(DataSection):
    """UCI census-income KDD: train = the .data file; the .test file split 1:1 into valid/test."""

    kind: Literal["census_kdd"]
    path: Path
    split_seed: int = 2018


class SyntheticData(DataSection):
    """Generated multitask data (see :mod:`recsys_mtl.data.synthetic`), cached as Parquet."""

    kind: Literal["synthetic"]
    rows: int = Field(20_000, ge=100)
    num_tasks: int = Field(2, ge=1)
    task_correlation: float = Field(0.5, ge=-1, le=1)
    #: sine terms per task (non-linearity), weight scale, label noise, share of positives
    complexity: int = Field(5, ge=0)
    scale: float = Field(1.0, gt=0)
    noise: float = Field(0.1, ge=0)
    positive_rate: float = Field(0.3, gt=0, lt=1)
    #: planted clusters of tasks (1 = none): tasks within a group correlate by task_correlation,
    #: across groups by group_correlation (see recsys_mtl.data.synthetic)
    task_groups: int = Field(1, ge=1)
    group_correlation: float = Field(-0.8, ge=-1, le=1)
    seed: int = 0
    cache_dir: Path = Path("data_cache")
    valid_fraction: float = Field(0.15, gt=0, lt=1)
    test_fraction: float = Field(0.15, gt=0, lt=1)

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
    rows: int = Field(150_000, ge=100)
    periods: int = Field(10, ge=3)
    users: int = Field(4000, ge=2)
    items: int = Field(4000, ge=2)
    zipf: float = Field(1.1, gt=0)
    new_id_rate: float = Field(0.2, ge=0, lt=1)
    drift: float = Field(0.6, ge=0)
    id_scale: float = Field(0.6, ge=0)
    #: "drift" or "cold_start" (most test users unseen; rating regression + a binary task)
    scenario: Literal["drift", "cold_start"] = "drift"
    cold_share: float = Field(0.8, ge=0, le=1)
    seed: int = 0
    cache_dir: Path = Path("data_cache")
    valid_periods: int = Field(1, ge=1)
    test_periods: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _periods_left_for_train(self) -> "SyntheticDriftData":
        if self.valid_periods + self.test_periods >= self.periods:
            raise ValueError(f"valid_periods + test_periods ({self.valid_periods + self.test_periods}) must leave training periods out of {self.periods}")
        return self


class SyntheticSequencesData(DataSection):
    """Generated behaviour-sequence data (see :mod:`recsys_mtl.data.synthetic_sequences`: targets
    depend on candidate × history), cached as Parquet and split at random with ``split_seed``."""

    kind: Literal["synthetic_sequences"]
    rows: int = Field(40_000, ge=100)
    users: int = Field(1_000, ge=1)
    items: int = Field(100, ge=2)
    categories: int = Field(8, ge=1)
    seed: int = 0
    cache_dir: Path = Path("data_cache")
    split_seed: int = 2018
    valid_fraction: float = Field(0.15, gt=0, lt=1)
    test_fraction: float = Field(0.15, gt=0, lt=1)


class ParquetStreamData(DataSection):
    """Train streamed from a Parquet dataset larger than memory (see :mod:`recsys_mtl.data.streaming`).

    ``train``: a folder of Parquet files, a glob, or one file; read row group by row group,
    preprocessing fitted in a streaming pass. ``valid`` / ``test``: separate files (or folders),
    read into memory.
    """

    kind: Literal["parquet_stream"]
    train: Path
    valid: Path
    test: Path
    #: rows shuffled together (a few row groups); bounds memory along with the row group size.
    shuffle_buffer_rows: int = Field(262_144, ge=1)
    #: DataLoader worker processes reading and encoding row groups (0 = in the training process).
    num_workers: int = Field(0, ge=0)


DataConfig = Annotated[Union[FilesData, CensusData, SyntheticData, SyntheticDriftData, SyntheticSequencesData, ParquetStreamData], Field(discriminator="kind")]


class ComponentConfig(StrictModel):
    """A registered component chosen by name with its own parameters."""

    name: str
    params: dict[str, Any] = {}


#: tracking URI schemes MLflow's client accepts (its tracking-store registry; a dialect suffix
#: such as ``postgresql+psycopg2`` is allowed)
MLFLOW_SCHEMES = ("file", "sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks", "databricks-uc", "uc")


class MLflowConfig(StrictModel):
    """MLflow logging of a fit, next to the CSV and TensorBoard logs (needs the ``mlflow`` extra)."""

    #: where runs are recorded; default: a SQLite store ``<runs_dir>/mlflow.db``
    tracking_uri: str | None = Field(None, min_length=1)
    #: default: the pipeline's name
    experiment: str | None = Field(None, min_length=1)
    #: extra tags on the MLflow run
    tags: dict[str, str] = {}

    @field_validator("tracking_uri")
    @classmethod
    def _known_scheme(cls, uri: str | None) -> str | None:
        # refused when the pipeline is read (validate, fit, tune), not when training starts
        scheme = urlsplit(uri).scheme.split("+")[0] if uri else ""
        if len(scheme) > 1 and scheme not in MLFLOW_SCHEMES:  # one letter: a Windows drive, a path
            raise ValueError(f"unsupported scheme {scheme!r} in {uri!r}; MLflow stores are a path or one of "
                             f"{', '.join(s + '://' for s in MLFLOW_SCHEMES)}")
        return uri


class TrainerConfig(StrictModel):
    max_epochs: int = Field(10, ge=1)
    batch_size: int = Field(1024, ge=1)
    eval_batch_size: int = Field(8192, ge=1)
    lr: float = Field(1e-3, gt=0)
    #: decoupled (AdamW) decay on dense weight matrices only (see recsys_mtl.train.optim)
    weight_decay: float = Field(0.0, ge=0)
    #: optimizer of the large embedding tables (recsys_mtl.train.optim): row-sparse updates
    #: (``auto`` = ``sparse_adam``, or ``rowwise_adagrad``), or ``dense`` (Adam on every row)
    embedding_optimizer: Literal["auto", "dense", "sparse_adam", "rowwise_adagrad"] = "auto"
    #: tables with at least this many rows get sparse gradients and the sparse optimizer
    sparse_min_rows: int = Field(100_000, ge=0)
    #: learning rate of the sparse optimizer (default: ``lr``)
    embedding_lr: float | None = Field(None, gt=0)
    #: per-step learning-rate schedule over max_epochs: constant, cosine (warmup + cosine decay), onecycle
    lr_schedule: Literal["constant", "cosine", "onecycle"] = "constant"
    #: share of the steps spent warming up linearly from ~0 to lr
    warmup_fraction: float = Field(0.0, ge=0, lt=1)
    #: cosine / onecycle: the learning rate at the last step, as a share of lr
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    #: early stopping and checkpoint selection, always on the validation split.
    monitor: str = "val/auc_mean"
    mode: Literal["min", "max"] = "max"
    patience: int = Field(3, ge=1)
    #: validate every this many training batches (counted across epochs) instead of once per
    #: epoch: early stopping (patience counts validations) and checkpoint selection then happen
    #: inside an epoch, for data where the best model comes before the first epoch ends (null: per epoch)
    val_check_interval: int | None = Field(None, ge=1)
    precision: str = "32-true"
    accelerator: str = "auto"
    devices: int | str = 1
    #: machines in a multi-node DDP run (see docs/scaling.md); devices is per machine.
    num_nodes: int = Field(1, ge=1)
    strategy: str = "auto"
    seed: int = 42
    deterministic: bool = True
    progress_bar: bool = True
    gradient_clip_val: float | None = None
    log_every_n_steps: int = Field(50, ge=1)
    #: train on at most this many batches per epoch (smoke runs, benchmarks on huge streams)
    limit_train_batches: int | None = Field(None, ge=1)
    #: also log params and metrics to MLflow: ``true`` or ``{tracking_uri, experiment, tags}``
    mlflow: MLflowConfig | None = None

    @field_validator("mlflow", mode="before")
    @classmethod
    def _mlflow_switch(cls, value: Any) -> Any:
        # ``mlflow: true`` turns it on with the defaults, ``false`` off
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
    spec: Path
    data: DataConfig
    model: ComponentConfig
    #: how features become the model's input vector (numeric embeddings, id dropout and
    #: regularisation, wide part, embedding widths, GBDT leaves, cross network, target
    #: standardisation); validated by recsys_mtl.nn.encoder_config.EncoderConfig when the model
    #: is built, so this module never lists their fields
    encoder: dict[str, Any] = {}
    balancing: ComponentConfig = ComponentConfig(name="equal")
    #: a reinforcement-learning training mode (``rmtl``, see recsys_mtl.train.rl); none by default
    rl: ComponentConfig | None = None
    trainer: TrainerConfig = TrainerConfig()
    runs_dir: Path = Path("runs")
    #: post-hoc calibration of binary tasks, fitted on the validation split after training and
    #: baked into the export: "temperature" or "platt" (see recsys_mtl.train.calibration).
    calibration: str | None = None
    #: free-form sections owned by later stages (tuning search space, export options).
    tune: dict[str, Any] = {}
    export: dict[str, Any] = {}
    #: baselines fitted next to the model (validated by recsys_mtl.baselines.config)
    baselines: dict[str, Any] = {}

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
