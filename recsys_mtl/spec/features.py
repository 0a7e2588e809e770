"""The feature spec: the one place a dataset's columns and tasks are described.

Every model is strict (``extra="forbid"``) so a typo in the YAML is an error, never a silently
ignored key.
"""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, Any, Literal, Union

import polars as pl
from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from recsys_mtl.errors import LeakageError, SpecError
from recsys_mtl.features.kinds.categorical import CategoricalFeature, HashConfig, VocabConfig
from recsys_mtl.features.kinds.numeric import ClipConfig, MissingPolicy, NumericFeature
from recsys_mtl.features.kinds.sequence import SequenceFeature, TargetAttentionConfig
from recsys_mtl.features.registry import kind_of, kinds
from recsys_mtl.strict import StrictModel

__all__ = [
    "CategoricalFeature", "ClipConfig", "Feature", "FeatureSpec", "HashConfig", "MissingPolicy", "NumericFeature",
    "SequenceFeature", "StrictModel", "TargetAttentionConfig", "Task", "VocabConfig", "expression_columns",
    "group_columns",
]

#: one spec class per registered kind (:mod:`recsys_mtl.features.kinds`), told apart by ``kind``
Feature = Annotated[Union[tuple(k.spec for k in kinds())], Field(discriminator="kind")]  # type: ignore[misc]

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
    """the task's name (an identifier): metrics, outputs and pipeline fields refer to it"""
    label: str = Field(min_length=1)
    """a column name or a polars SQL expression over the raw columns (e.g. `income_50k = '50000+.'`)"""
    type: Literal["binary", "regression", "multiclass"] = "binary"
    """binary, regression or multiclass"""
    num_classes: int | None = Field(None, ge=2)
    """number of classes (multiclass only, and required there)"""
    loss: str | None = None
    """the loss: bce (binary); mse, huber or mae (regression); ce (multiclass); default the first"""
    metrics: tuple[str, ...] | None = None
    """metrics reported and selectable as monitor (default per type: auc and logloss, plus gauc with a `group_by`; rmse and mae;
    accuracy and logloss)"""
    weight: float = Field(1.0, ge=0.0)
    """the task's weight in the `equal` / static balancing sum"""
    mask: str | None = None
    """a polars SQL expression, true = the row counts for this task (e.g. conversion only on clicked rows)"""
    sample_weight: str | None = None
    """a polars SQL expression giving each row's weight in this task's loss and metrics"""
    derived_columns: tuple[str, ...] = ()
    """columns computed from the label (e.g. the raw marital status behind "never married"): listing one as a feature is a leak
    and an error.
    """
    after: str | None = None
    """funnel stage: the name of an earlier binary task this event can only follow (conversion ``after`` click). The label stays
    over the entire space (1 = both events happened), and funnel models (esmm, aitm) predict it as p(previous) · p(this |
    previous).
    """
    group_by: str | None = Field(None, min_length=1)
    """raw column whose values group rows (e.g. a user id) for grouped AUC (``gauc``); defaults to the spec's ``group_by``."""

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
    """the categorical feature that identifies the user"""
    item: str | None = Field(None, min_length=1)
    """the categorical feature that identifies the item"""


class FeatureSpec(StrictModel):
    name: str = Field(min_length=1)
    """the spec's name"""
    description: str = ""
    """free text about the data set, for people"""
    features: list[Feature] = Field(min_length=1)
    """the input features, each with its `kind` (see the feature kinds above)"""
    tasks: list[Task] = Field(min_length=1)
    """the prediction targets, in the model's task order"""
    group_by: str | None = Field(None, min_length=1)
    """raw column grouping rows for grouped AUC (e.g. ``user_id``); every task without its own ``group_by`` inherits it."""
    ignore: tuple[str, ...] = ()
    """raw columns deliberately not used (documentation, and checked against features)."""
    entities: Entities | None = None
    """which features are the user and the item (optional; the bias baselines need them)"""

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
        _unique([s for f in self.features if (s := kind_of(f).plain_source(f)) is not None], "features", "source column",
                [i for i, f in enumerate(self.features) if kind_of(f).plain_source(f) is not None])
        _check_inputs(self.features)
        _check_tables(self.features)
        for i, f in enumerate(self.features):
            kind_of(f).check_in_spec(f, self.features, i)
        sources: dict[str, str] = {}
        for f in self.features:
            for inp in kind_of(f).inputs(f):
                sources.setdefault(inp.name, f.name)
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
        cols = [inp.name for f in self.features for inp in kind_of(f).inputs(f)] + self.group_columns
        for i, t in enumerate(self.tasks):
            for field in ("label", "mask", "sample_weight"):
                expr = getattr(t, field)
                if expr is not None:
                    cols += expression_columns(expr, f"tasks[{i}].{field}")
        return list(dict.fromkeys(cols))


def group_columns(tasks: list[Task]) -> list[str]:
    """The distinct ``group_by`` columns of ``tasks``, in task order: the columns of ``groups``."""
    return list(dict.fromkeys(t.group_by for t in tasks if t.group_by is not None))


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


def _unique(names: list[str], where: str, what: str, positions: list[int] | None = None) -> None:
    seen: set[str] = set()
    for i, n in enumerate(names):
        if n in seen:
            raise ValueError(f"{where}[{i if positions is None else positions[i]}]: duplicate {what} {n!r}")
        seen.add(n)


def _check_inputs(features: list[Any]) -> None:
    """A raw column read by several features (a ``match`` reads the candidate id a categorical reads
    too) is read as one input type everywhere (same separator for text sequences): the served model
    takes one value per column. Sequence windows (``max_len``) may differ: the input keeps the widest."""
    seen: dict[str, tuple[str, str | None, str]] = {}
    for i, f in enumerate(features):
        for inp in kind_of(f).inputs(f):
            first = seen.setdefault(inp.name, (inp.kind, inp.separator, f.name))
            if first[:2] != (inp.kind, inp.separator):
                sep = "" if inp.separator is None else f" split on {inp.separator!r}"
                sep0 = "" if first[1] is None else f" split on {first[1]!r}"
                raise ValueError(f"features[{i}] ({f.name}): column {inp.name!r} is read as a {inp.kind} input{sep} "
                                 f"here but as a {first[0]} input{sep0} by feature {first[2]!r}")


def _check_tables(features: list[Any]) -> None:
    """Features sharing a table by name agree on its width and index rule."""
    by_table: dict[str, tuple[str, int, str]] = {}
    for i, f in enumerate(features):
        for use in kind_of(f).table_uses(f):
            if not use.shared:
                continue
            index = "hash" if use.hash else "vocab"
            seen = by_table.setdefault(use.table, (f.name, use.embedding_dim, index))
            if seen[1:] != (use.embedding_dim, index):
                raise ValueError(
                    f"features[{i}] ({f.name}): shared_table {use.table!r} is also used by "
                    f"{seen[0]!r} with a different embedding_dim or index type"
                )
