"""The feature spec: the one place a dataset's columns and tasks are described.

Every model is strict (``extra="forbid"``) so a typo in the YAML is an error, never a silently
ignored key.
"""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, Any, Literal, Union

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from recsys_mtl.errors import LeakageError, SpecError


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VocabConfig(StrictModel):
    """A vocabulary fitted on the train split; rarer or excess values map to the OOV bucket."""

    min_freq: int = Field(1, ge=1)
    max_size: int | None = Field(None, ge=1)


class HashConfig(StrictModel):
    """Feature hashing (MurmurHash3 x86 32-bit of the UTF-8 string, unsigned, modulo ``buckets``)."""

    buckets: int = Field(ge=2)
    seed: int = Field(0, ge=0)


class _Categorical(StrictModel):
    name: str = Field(min_length=1)
    column: str | None = None
    vocab: VocabConfig | None = None
    hash: HashConfig | None = None
    embedding_dim: int = Field(8, ge=1)
    #: features naming the same table share one embedding table (and one vocabulary).
    shared_table: str | None = None
    #: a value outside the fitted vocabulary: the OOV bucket (with a warning above 5% of rows),
    #: or an error naming the column, for closed sets where a new value means broken data.
    unseen: Literal["oov", "error"] = "oov"

    @model_validator(mode="after")
    def _one_index(self) -> "_Categorical":
        if self.vocab is not None and self.hash is not None:
            raise ValueError("give either 'vocab' or 'hash', not both")
        if self.unseen == "error" and (self.hash is not None or self.vocab_config != VocabConfig()):
            raise ValueError("unseen 'error' needs a full vocabulary (no hash, min_freq 1, no max_size)")
        return self

    @property
    def source(self) -> str:
        return self.column or self.name

    @property
    def table(self) -> str:
        return self.shared_table or self.name

    @property
    def vocab_config(self) -> VocabConfig:
        return self.vocab or VocabConfig()


class CategoricalFeature(_Categorical):
    kind: Literal["categorical"]


class TargetAttentionConfig(StrictModel):
    """DIN target attention (see :mod:`recsys_mtl.nn.target_attention`): the sequence is pooled
    with weights computed from each element and the ``query`` feature's embedding."""

    #: a categorical feature (e.g. the candidate item) sharing this sequence's embedding table
    query: str = Field(min_length=1)
    #: widths of the local activation unit's hidden layers (DIN: 80, 40)
    hidden: tuple[int, ...] = Field((80, 40), min_length=1)
    #: normalise weights with a softmax over the sequence (DIN's reference code) instead of the
    #: paper's raw weights
    softmax: bool = False


class SequenceFeature(_Categorical):
    """A multi-hot / sequence list column, padded or truncated to ``max_len`` and pooled.

    With ``separator`` the column may also be text (CSV): each value is split into items by
    :func:`serving.contract.split_items`, the rule the exported model's server applies as well.
    """

    kind: Literal["sequence"]
    max_len: int = Field(ge=1)
    pooling: Literal["mean", "sum", "max", "target_attention"] = "mean"
    attention: TargetAttentionConfig | None = None
    separator: str | None = Field(None, min_length=1, description=(
        "split a text column (e.g. 'Action|Comedy' from a CSV) into items on this string: items are "
        "stripped of surrounding ASCII whitespace and empty ones dropped, so an empty or null value is an "
        "empty sequence; a list column is still taken as it is. The export records it, and the server then "
        "takes a delimited string or a list for this input"))

    @model_serializer(mode="wrap")
    def _drop_unset_separator(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # a spec without a separator dumps (and hashes, see preprocess.spec_hash) as before the field existed
        out = handler(self)
        if out.get("separator", "") is None:
            del out["separator"]
        return out

    @model_validator(mode="after")
    def _attention_with_pooling(self) -> "SequenceFeature":
        if (self.pooling == "target_attention") != (self.attention is not None):
            raise ValueError("pooling 'target_attention' and an 'attention' section (with its query) go together")
        return self


class MissingPolicy(StrictModel):
    """What a numeric feature does with a missing value: null or NaN. ±inf is not missing: the
    data is refused, naming the column (see docs/input_limits.md)."""

    impute: Literal["mean", "median", "zero", "constant"] = "mean"
    value: float | None = None
    indicator: bool = True

    @model_validator(mode="after")
    def _constant_needs_value(self) -> "MissingPolicy":
        if self.impute == "constant" and self.value is None:
            raise ValueError("impute 'constant' needs a 'value'")
        return self


class ClipConfig(StrictModel):
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> "ClipConfig":
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"clip min {self.min} > max {self.max}")
        return self


class NumericFeature(StrictModel):
    """A numeric column: impute → clip → signed log1p → standardize, or quantile buckets.

    With ``quantile_buckets`` the value becomes a bucket index with its own embedding (bucket 0
    holds missing values); otherwise it enters the model as one standardized number.
    """

    kind: Literal["numeric"]
    name: str = Field(min_length=1)
    column: str | None = None
    missing: MissingPolicy = MissingPolicy()
    clip: ClipConfig | None = None
    log1p: bool = False
    standardize: bool = True
    quantile_buckets: int | None = Field(None, ge=2)
    embedding_dim: int = Field(8, ge=1)

    @property
    def source(self) -> str:
        return self.column or self.name


Feature = Annotated[
    Union[CategoricalFeature, NumericFeature, SequenceFeature], Field(discriminator="kind")
]

_DEFAULT_LOSS = {"binary": "bce", "regression": "mse", "multiclass": "ce"}
_DEFAULT_METRICS = {
    "binary": ("auc", "logloss"),
    "regression": ("rmse", "mae"),
    "multiclass": ("accuracy", "logloss"),
}
_ALLOWED_LOSS = {"binary": {"bce"}, "regression": {"mse", "huber", "mae"}, "multiclass": {"ce"}}
_ALLOWED_METRICS = {
    "binary": {"auc", "gauc", "logloss", "accuracy"},
    "regression": {"rmse", "mae"},
    "multiclass": {"accuracy", "logloss"},
}


def expression_columns(expr: str, where: str) -> list[str]:
    """Columns referenced by a polars SQL expression (a bare column name is an expression too)."""
    try:
        return sorted(set(pl.sql_expr(expr).meta.root_names()))
    except Exception as exc:  # polars raises several types for bad SQL
        raise SpecError(f"{where}: cannot parse expression {expr!r}: {exc}") from None


class Task(StrictModel):
    """One prediction target.

    ``label`` is a column name or a polars SQL expression over the raw columns
    (e.g. ``income_50k = '50000+.'``). ``mask`` (an expression, true = counted) restricts the
    rows a task is trained and evaluated on, e.g. conversion only on clicked rows.
    """

    name: str = Field(min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    label: str = Field(min_length=1)
    type: Literal["binary", "regression", "multiclass"] = "binary"
    num_classes: int | None = Field(None, ge=2)
    loss: str | None = None
    metrics: tuple[str, ...] | None = None
    weight: float = Field(1.0, ge=0.0)
    mask: str | None = None
    sample_weight: str | None = None
    #: columns computed from the label (e.g. the raw marital status behind "never married"):
    #: listing one as a feature is a leak and an error.
    derived_columns: tuple[str, ...] = ()
    #: funnel stage: the name of an earlier binary task this event can only follow (conversion
    #: ``after`` click). The label stays over the entire space (1 = both events happened), and
    #: funnel models (esmm, aitm) predict it as p(previous) · p(this | previous).
    after: str | None = None
    #: raw column whose values group rows (e.g. a user id) for grouped AUC (``gauc``); defaults
    #: to the spec's ``group_by``.
    group_by: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> "Task":
        if self.type == "multiclass" and self.num_classes is None:
            raise ValueError("a multiclass task needs 'num_classes'")
        if self.type != "multiclass" and self.num_classes is not None:
            raise ValueError("'num_classes' is only for multiclass tasks")
        if self.loss is not None and self.loss not in _ALLOWED_LOSS[self.type]:
            raise ValueError(
                f"loss {self.loss!r} does not fit a {self.type} task "
                f"(choose from {sorted(_ALLOWED_LOSS[self.type])})"
            )
        bad = set(self.metrics or ()) - _ALLOWED_METRICS[self.type]
        if bad:
            raise ValueError(
                f"metrics {sorted(bad)} do not fit a {self.type} task "
                f"(choose from {sorted(_ALLOWED_METRICS[self.type])})"
            )
        if "gauc" in (self.metrics or ()) and self.group_by is None:
            raise ValueError("metric 'gauc' needs a grouping column: set 'group_by' on the task or the spec")
        return self

    @property
    def loss_name(self) -> str:
        return self.loss or _DEFAULT_LOSS[self.type]

    @property
    def metric_names(self) -> tuple[str, ...]:
        if self.metrics:
            return self.metrics
        grouped = ("gauc",) if self.type == "binary" and self.group_by is not None else ()
        return _DEFAULT_METRICS[self.type] + grouped

    @property
    def output_dim(self) -> int:
        return self.num_classes if self.type == "multiclass" else 1


class Entities(StrictModel):
    """Which categorical features are the user and the item (for the bias / item-mean baselines)."""

    user: str | None = Field(None, min_length=1)
    item: str | None = Field(None, min_length=1)


class FeatureSpec(StrictModel):
    name: str = Field(min_length=1)
    description: str = ""
    features: list[Feature] = Field(min_length=1)
    tasks: list[Task] = Field(min_length=1)
    #: raw column grouping rows for grouped AUC (e.g. ``user_id``); every task without its own
    #: ``group_by`` inherits it.
    group_by: str | None = Field(None, min_length=1)
    #: raw columns deliberately not used (documentation, and checked against features).
    ignore: tuple[str, ...] = ()
    #: which features are the user and the item (optional; the bias baselines need them)
    entities: Entities | None = None

    @model_serializer(mode="wrap")
    def _drop_unset_entities(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # a spec without entities dumps (and hashes, see preprocess.spec_hash) as before the field existed
        out = handler(self)
        if out.get("entities", "") is None:
            del out["entities"]
        return out

    @model_validator(mode="after")
    def _entities_are_categorical(self) -> "FeatureSpec":
        names = {f.name for f in self.features if isinstance(f, CategoricalFeature)}
        for role in ("user", "item"):
            name = getattr(self.entities, role, None)
            if name is not None and name not in names:
                raise ValueError(f"entities.{role}: {name!r} is not a categorical feature")
        return self

    @model_validator(mode="before")
    @classmethod
    def _inherit_group_by(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("group_by") and isinstance(data.get("tasks"), list):
            data = dict(data)
            data["tasks"] = [
                {**t, "group_by": data["group_by"]} if isinstance(t, dict) and t.get("group_by") is None else t
                for t in data["tasks"]
            ]
        return data

    @model_validator(mode="after")
    def _check(self) -> "FeatureSpec":
        _unique([f.name for f in self.features], "features", "feature name")
        _unique([t.name for t in self.tasks], "tasks", "task name")
        _unique([f.source for f in self.features], "features", "source column")
        by_table: dict[str, tuple[str, int, str]] = {}
        for i, f in enumerate(self.features):
            if isinstance(f, NumericFeature) or f.shared_table is None:
                continue
            index = "hash" if f.hash else "vocab"
            seen = by_table.setdefault(f.table, (f.name, f.embedding_dim, index))
            if seen[1:] != (f.embedding_dim, index):
                raise ValueError(
                    f"features[{i}] ({f.name}): shared_table {f.table!r} is also used by "
                    f"{seen[0]!r} with a different embedding_dim or index type"
                )
        for i, f in enumerate(self.features):
            if isinstance(f, SequenceFeature) and f.attention is not None:
                _check_query(self.features, i, f.attention.query)
        sources = {f.source: f.name for f in self.features}
        for i, t in enumerate(self.tasks):
            label_cols = expression_columns(t.label, f"tasks[{i}] ({t.name}).label")
            for col in [*label_cols, *t.derived_columns]:
                if col in sources:
                    what = "label column" if col in label_cols else "column derived from the label"
                    raise LeakageError(
                        f"tasks[{i}] ({t.name}): {what} {col!r} is also the feature "
                        f"{sources[col]!r}; a label used as a feature is a leak"
                    )
            for field in ("mask", "sample_weight"):
                expr = getattr(t, field)
                if expr is not None:
                    expression_columns(expr, f"tasks[{i}] ({t.name}).{field}")
            if t.after is not None:
                _check_funnel_stage(self.tasks, i)
        ignored = set(self.ignore) & set(sources)
        if ignored:
            raise ValueError(f"ignore: columns {sorted(ignored)} are also features")
        return self

    @cached_property
    def categorical(self) -> list[CategoricalFeature]:
        return [f for f in self.features if isinstance(f, CategoricalFeature)]

    @cached_property
    def numeric(self) -> list[NumericFeature]:
        return [f for f in self.features if isinstance(f, NumericFeature)]

    @cached_property
    def sequences(self) -> list[SequenceFeature]:
        return [f for f in self.features if isinstance(f, SequenceFeature)]

    @cached_property
    def group_columns(self) -> list[str]:
        return group_columns(self.tasks)

    def required_columns(self) -> list[str]:
        """Every raw column the spec reads: features, labels, masks, sample weights and groups."""
        cols = [f.source for f in self.features] + self.group_columns
        for i, t in enumerate(self.tasks):
            for field in ("label", "mask", "sample_weight"):
                expr = getattr(t, field)
                if expr is not None:
                    cols += expression_columns(expr, f"tasks[{i}].{field}")
        return list(dict.fromkeys(cols))


def group_columns(tasks: list[Task]) -> list[str]:
    """The distinct ``group_by`` columns of ``tasks``, in task order: the columns of ``groups``."""
    return list(dict.fromkeys(t.group_by for t in tasks if t.group_by is not None))


def _check_query(features: list["Feature"], i: int, query: str) -> None:
    """The attention query of ``features[i]`` is a categorical feature sharing its table."""
    seq = features[i]
    where = f"features[{i}] ({seq.name}).attention.query"
    q = next((f for f in features if f.name == query), None)
    if not isinstance(q, CategoricalFeature):
        raise ValueError(f"{where}: {query!r} is not a categorical feature")
    if q.table != seq.table:  # type: ignore[union-attr]
        raise ValueError(f"{where}: {query!r} must share the sequence's embedding table (set the same 'shared_table' on both)")


def _check_funnel_stage(tasks: list[Task], i: int) -> None:
    """``tasks[i].after`` names an earlier task, and both are binary events."""
    t = tasks[i]
    earlier = {u.name: u for u in tasks[:i]}
    where = f"tasks[{i}] ({t.name}).after"
    if t.after not in earlier:
        later = t.after in {u.name for u in tasks[i:]}
        raise ValueError(
            f"{where}: {t.after!r} is "
            + ("not an earlier task (funnel stages must be listed in order)" if later else "not a task name")
        )
    if t.type != "binary" or earlier[t.after].type != "binary":
        raise ValueError(f"{where}: funnel stages must be binary tasks")


def _unique(names: list[str], where: str, what: str) -> None:
    seen: set[str] = set()
    for i, n in enumerate(names):
        if n in seen:
            raise ValueError(f"{where}[{i}]: duplicate {what} {n!r}")
        seen.add(n)
