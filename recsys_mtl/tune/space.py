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
      trial_overrides: {trainer.max_epochs: 3}    # trials only; the final refit uses the pipeline's
      train_fraction: 0.2              # trials train on 20% of the train rows (seeded); the refit on all
      enqueue: [{trainer.lr: 0.002}]              # trials run first, after the default
      enqueue_default: true            # trial 0 = the pipeline as written (never beaten on validation by the best)
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

Objectives: ``single`` (one validation metric; default the trainer's monitor), ``weighted``
(a weighted sum of validation metrics, one number), ``multi`` (one objective per metric, default
every task's first metric; the study returns the Pareto front).

Parameters are addressed by dotted path into the pipeline (``model.*``, ``balancing.*``,
``trainer.*``) and sampled in the order written; ``when`` makes a parameter active only when
earlier parameters (or fixed pipeline values) take the given value (or one of a list of values).
When ``model.name`` / ``balancing.name`` is tuned, pipeline params the sampled family does not
accept are left out of that trial (they belong to another family).

:func:`check_space` validates every path and every value a trial could take against the pipeline,
its model / balancing registries and the spec's tasks, before any data is read or trial runs.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, Union

import optuna
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from recsys_mtl.balancing import BALANCERS
from recsys_mtl.errors import SpecError
from recsys_mtl.models.registry import MODELS
from recsys_mtl.registry import Registry
from recsys_mtl.spec.features import FeatureSpec
from recsys_mtl.spec.pipeline import PipelineConfig

#: pipeline sections a study may change; data and spec are fixed (encoded once per process).
TUNABLE_SECTIONS = ("model", "balancing", "trainer")
_REGISTRIES: dict[str, Registry[Any]] = {"model": MODELS, "balancing": BALANCERS}
Scalar = Union[bool, int, float, str, None]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Param(_Strict):
    #: active only when each named path (earlier parameter or fixed pipeline value) has this value / one of these values.
    when: dict[str, Union[Scalar, list[Scalar]]] = {}


class FloatParam(_Param):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _bounds(self) -> "FloatParam":
        _check_bounds(self.low, self.high, self.log, self.step)
        return self

    def suggest(self, trial: optuna.Trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log, step=self.step)

    def contains(self, value: Any) -> bool:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and self.low <= value <= self.high
        return ok and (self.step is None or abs((value - self.low) / self.step - round((value - self.low) / self.step)) < 1e-9)

    def candidates(self) -> list[Any]:
        return [self.low, self.high]


class IntParam(_Param):
    type: Literal["int"]
    low: int
    high: int
    step: int = Field(1, ge=1)
    log: bool = False

    @model_validator(mode="after")
    def _bounds(self) -> "IntParam":
        _check_bounds(self.low, self.high, self.log, self.step if self.step != 1 else None)
        return self

    def suggest(self, trial: optuna.Trial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, step=self.step, log=self.log)

    def contains(self, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and self.low <= value <= self.high and (value - self.low) % self.step == 0

    def candidates(self) -> list[Any]:
        return [self.low, self.high]


class CategoricalParam(_Param):
    """Choices may be lists or mappings (e.g. layer sizes); Optuna stores those as JSON strings."""

    type: Literal["categorical"]
    choices: list[Any] = Field(min_length=1)

    @field_validator("choices")
    @classmethod
    def _distinct(cls, choices: list[Any]) -> list[Any]:
        keys = [_encode(c) for c in choices]
        if len(set(keys)) != len(keys):
            raise ValueError("choices must be distinct")
        return choices

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        return _decode(trial.suggest_categorical(name, [_encode(c) for c in self.choices]))

    def contains(self, value: Any) -> bool:
        return _encode(value) in {_encode(c) for c in self.choices}

    def candidates(self) -> list[Any]:
        return list(self.choices)


Param = Annotated[Union[FloatParam, IntParam, CategoricalParam], Field(discriminator="type")]


def _check_bounds(low: float, high: float, log: bool, step: float | None) -> None:
    if low > high:
        raise ValueError(f"low ({low}) > high ({high})")
    if log and low <= 0:
        raise ValueError(f"log scale needs low > 0 (got {low})")
    if log and step is not None:
        raise ValueError("step and log cannot be combined")


def _encode(value: Any) -> Scalar:
    return value if value is None or isinstance(value, (bool, int, float, str)) else json.dumps(value)


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        return json.loads(value)
    return value


# ---------------------------------------------------------------------------------- objectives
Direction = Literal["maximize", "minimize"]
_MINIMIZED = ("loss", "logloss", "rmse", "mae")


def default_direction(metric: str) -> Direction:
    return "minimize" if metric.rsplit("/", 1)[-1] in _MINIMIZED else "maximize"


def _val_metric(metric: str) -> str:
    if not metric.startswith("val/"):
        raise ValueError(f"{metric!r}: a study may only see validation metrics ('val/...')")
    return metric


class SingleObjective(_Strict):
    """One validation metric (default: the trainer's monitor, in its mode)."""

    kind: Literal["single"]
    metric: str | None = None
    direction: Direction | None = None

    _check = field_validator("metric")(lambda cls, v: v if v is None else _val_metric(v))


class WeightedObjective(_Strict):
    """Σ weight · metric over validation metrics, one number; pruning watches the sum."""

    kind: Literal["weighted"]
    weights: dict[str, float] = Field(min_length=1)
    direction: Direction = "maximize"

    @field_validator("weights")
    @classmethod
    def _val(cls, weights: dict[str, float]) -> dict[str, float]:
        for metric in weights:
            _val_metric(metric)
        return weights


class MultiObjective(_Strict):
    """One objective per metric (default: each task's first metric); the result is a Pareto front."""

    kind: Literal["multi"]
    metrics: list[str] = []
    directions: list[Direction] = []

    @model_validator(mode="after")
    def _shape(self) -> "MultiObjective":
        for metric in self.metrics:
            _val_metric(metric)
        if self.directions and len(self.directions) != len(self.metrics):
            raise ValueError(f"directions: {len(self.directions)} given for {len(self.metrics)} metrics")
        return self


Objective = Annotated[Union[SingleObjective, WeightedObjective, MultiObjective], Field(discriminator="kind")]


class Component(_Strict):
    """An Optuna sampler or pruner by name, with its keyword arguments."""

    name: str
    params: dict[str, Any] = {}


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


class TuneConfig(_Strict):
    space: dict[str, Param] = Field(min_length=1)
    objective: Objective = SingleObjective(kind="single")
    n_trials: int | None = Field(20, ge=1)
    timeout: float | None = Field(None, gt=0)
    study_name: str | None = Field(None, min_length=1)
    storage: str | None = None
    sampler: Component = Component(name="tpe")
    #: default: median pruning for one objective; Optuna cannot prune multi-objective studies.
    pruner: Component | None = None
    trial_overrides: dict[str, Any] = {}
    #: trials train on this seeded random share of the train rows (validation stays whole); the refit uses all.
    train_fraction: float = Field(1.0, gt=0, le=1)
    enqueue: list[dict[str, Any]] = []
    #: the untuned pipeline is the study's first trial, so the best trial is never worse than it on validation
    enqueue_default: bool = True
    #: also refit the default trial (when it is not the chosen one) so the summary shows default vs tuned on test
    refit_default: bool = True
    #: RDB heartbeat: a worker silent for grace_period seconds has its running trial failed (then retried).
    heartbeat_interval: int = Field(30, ge=1)
    grace_period: int = Field(90, ge=2)
    max_retry: int = Field(1, ge=0)
    #: which Pareto-front trial to refit: index into best_trials sorted by the first objective.
    refit_pareto_index: int = Field(0, ge=0)
    plots: Literal["html", "png", "none"] = "html"

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
        if isinstance(self.objective, MultiObjective) and self.pruner is not None and self.pruner.name != "none":
            raise ValueError("pruner: Optuna cannot prune multi-objective studies (use pruner: null or name: none)")
        if self.grace_period <= self.heartbeat_interval:
            raise ValueError(f"grace_period ({self.grace_period}) must exceed heartbeat_interval ({self.heartbeat_interval})")
        return self

    @property
    def is_multi(self) -> bool:
        return isinstance(self.objective, MultiObjective)

    def make_sampler(self) -> optuna.samplers.BaseSampler:
        return _build(SAMPLERS, self.sampler, "sampler")

    def make_pruner(self) -> optuna.pruners.BasePruner:
        if self.pruner is None:
            return optuna.pruners.NopPruner() if self.is_multi else optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
        return _build(PRUNERS, self.pruner, "pruner")


def _build(table: dict[str, type[Any]], c: Component, field: str) -> Any:
    if c.name not in table:
        raise ValueError(f"unknown {field} {c.name!r} (available: {', '.join(sorted(table))})")
    try:
        return table[c.name](**c.params)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{c.name} params: {exc}") from None


# ---------------------------------------------------------------------------------- parsing
def parse_tune(raw: dict[str, Any], source: str) -> TuneConfig:
    """Validate the free-form ``tune`` mapping; errors name ``<source>: tune.<field>``."""
    if not raw:
        raise SpecError(f"{source}: tune: missing (add a 'tune:' section with a 'space')")
    try:
        return TuneConfig.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
            where = _location(raw, err["loc"])
            lines.append(f"{source}: tune{'.' + where if where else ''}: {msg}")
        raise SpecError("\n".join(lines)) from None


def _location(raw: Any, loc: tuple[Any, ...]) -> str:
    """Dotted location in the YAML, without pydantic's union tags (which are not YAML keys)."""
    parts, node = [], raw
    for key in loc:
        if isinstance(node, dict) and key in node:
            parts.append(f"[{key}]" if isinstance(key, int) else str(key))
            node = node[key]
        elif isinstance(node, list) and isinstance(key, int) and key < len(node):
            parts.append(f"[{key}]")
            node = node[key]
        elif isinstance(key, int) or not (isinstance(node, dict) and (key == node.get("type") or key == node.get("kind") or str(key).startswith("function-"))):
            parts.append(str(key))
            node = None
    return ".".join(parts).replace(".[", "[")


# ---------------------------------------------------------------------------------- applying
def get_path(raw: dict[str, Any], path: str) -> Any:
    node: Any = raw
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(path)
        node = node[part]
    return node


def set_path(raw: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def resolve(cfg: PipelineConfig, assignments: dict[str, Any]) -> PipelineConfig:
    """The pipeline with ``assignments`` (dotted path → value) applied, fully validated.

    Raises SpecError naming the field when a value is rejected by the pipeline schema or by the
    model / balancing family's own config.
    """
    raw = cfg.model_dump(mode="python")
    for section, registry in _REGISTRIES.items():
        name = assignments.get(f"{section}.name")
        if name is not None and name != raw[section]["name"]:
            # another family: keep only the base params it accepts
            fields = registry.get(name).Config.model_fields  # type: ignore[attr-defined]
            raw[section]["params"] = {k: v for k, v in raw[section]["params"].items() if k in fields}
    for path, value in assignments.items():
        set_path(raw, path, value)
    try:
        out = PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        raise SpecError("; ".join(f"{'.'.join(map(str, e['loc']))}: " + ("unknown key" if e["type"] == "extra_forbidden" else e["msg"]) for e in exc.errors())) from None
    for section, registry in _REGISTRIES.items():
        comp = getattr(out, section)
        registry.config(comp.name, comp.params)
    return out


def active(param: Param, values: dict[str, Any], cfg_raw: dict[str, Any]) -> bool:
    """Whether ``param``'s ``when`` conditions hold for the values sampled so far (or fixed ones)."""
    for path, wanted in param.when.items():
        current = values[path] if path in values else _fixed(cfg_raw, path)
        allowed = wanted if isinstance(wanted, list) else [wanted]
        if current not in allowed:
            return False
    return True


def _fixed(cfg_raw: dict[str, Any], path: str) -> Any:
    try:
        return get_path(cfg_raw, path)
    except KeyError:
        return None


def default_assignment(space: dict[str, Param], cfg: PipelineConfig) -> tuple[dict[str, Any], list[str]]:
    """The pipeline's own value of every active space parameter (family defaults filled in), and
    the paths whose value the space cannot express (the default trial leaves those unset, i.e. as
    the pipeline has them)."""
    raw = cfg.model_dump(mode="python")
    for section, registry in _REGISTRIES.items():
        comp = getattr(cfg, section)
        raw[section]["params"] = registry.config(comp.name, comp.params).model_dump(mode="python")
    values: dict[str, Any] = {}
    outside: list[str] = []
    for path, param in space.items():
        if not active(param, values, raw):
            continue
        value = _fixed(raw, path)
        if value is not None and param.contains(value):
            values[path] = value
        else:
            outside.append(path)
    return values, outside


def sample(space: dict[str, Param], trial: optuna.Trial, cfg_raw: dict[str, Any]) -> dict[str, Any]:
    """Suggest every active parameter in order; returns dotted path → decoded value."""
    values: dict[str, Any] = {}
    for path, param in space.items():
        if active(param, values, cfg_raw):
            values[path] = param.suggest(trial, path)
    return values


# ---------------------------------------------------------------------------------- checking
def check_space(tune: TuneConfig, cfg: PipelineConfig, spec: FeatureSpec, source: str) -> None:
    """Fail (SpecError naming the field) on anything a trial would trip over, before any trial runs."""
    cfg_raw = cfg.model_dump(mode="python")
    seen: list[str] = []
    for path, param in tune.space.items():
        where = f"{source}: tune.space.{path}"
        section = path.split(".", 1)[0]
        if section not in TUNABLE_SECTIONS:
            raise SpecError(f"{where}: not tunable (only {', '.join(p + '.*' for p in TUNABLE_SECTIONS)}; data and spec are encoded once per study)")
        if path.count(".") == 0 or path in (f"{s}.params" for s in _REGISTRIES):
            raise SpecError(f"{where}: unknown parameter path (address one field, e.g. {section}.params.<name>)")
        for cond in param.when:
            if cond in tune.space and cond not in seen:
                raise SpecError(f"{where}: when: {cond!r} is sampled after this parameter; list it first")
            if cond not in tune.space:
                try:
                    get_path(cfg_raw, cond)
                except KeyError:
                    raise SpecError(f"{where}: when: unknown path {cond!r} (neither a tuned parameter nor set in the pipeline)") from None
        for value in param.candidates():
            for context in _contexts(path, param, tune, cfg_raw):
                try:
                    resolve(cfg, {**context, path: value})
                except SpecError as exc:
                    family = f" (with {', '.join(f'{k}={v}' for k, v in context.items())})" if context else ""
                    raise SpecError(f"{where}: value {value!r}{family}: {exc}") from None
        seen.append(path)
    for i, assignment in enumerate(tune.enqueue):
        unknown = [p for p in assignment if p not in tune.space]
        if unknown:
            raise SpecError(f"{source}: tune.enqueue[{i}]: {', '.join(unknown)} not in tune.space")
    try:
        resolve(cfg, dict(tune.trial_overrides))
    except SpecError as exc:
        raise SpecError(f"{source}: tune.trial_overrides: {exc}") from None
    known = known_metrics(spec)
    for metric in objective_metrics(tune, cfg, spec):
        if metric not in known:
            raise SpecError(f"{source}: tune.objective: unknown metric {metric!r} (known: {', '.join(sorted(known))})")


def _contexts(path: str, param: Param, tune: TuneConfig, cfg_raw: dict[str, Any]) -> list[dict[str, Any]]:
    """Family choices a parameter under ``model.params`` / ``balancing.params`` is checked with."""
    section = path.split(".", 1)[0]
    name_path = f"{section}.name"
    if section not in _REGISTRIES or name_path not in tune.space or path == name_path:
        return [{}]
    names = tune.space[name_path].candidates()
    if name_path in param.when:
        wanted = param.when[name_path]
        names = [n for n in names if n in (wanted if isinstance(wanted, list) else [wanted])]
    return [{name_path: n} for n in names]


def known_metrics(spec: FeatureSpec) -> set[str]:
    names = {"val/loss"}
    for t in spec.tasks:
        names.update(f"val/{t.name}/{m}" for m in (*t.metric_names, "loss"))
    if any("auc" in t.metric_names for t in spec.tasks):
        names.add("val/auc_mean")
    return names


def objective_metrics(tune: TuneConfig, cfg: PipelineConfig, spec: FeatureSpec) -> list[str]:
    obj = tune.objective
    if isinstance(obj, SingleObjective):
        return [obj.metric or cfg.trainer.monitor]
    if isinstance(obj, WeightedObjective):
        return list(obj.weights)
    return obj.metrics or [f"val/{t.name}/{t.metric_names[0]}" for t in spec.tasks]


def directions(tune: TuneConfig, cfg: PipelineConfig, spec: FeatureSpec) -> list[Direction]:
    obj = tune.objective
    if isinstance(obj, SingleObjective):
        if obj.direction is not None:
            return [obj.direction]
        if obj.metric is None or obj.metric == cfg.trainer.monitor:
            return ["maximize" if cfg.trainer.mode == "max" else "minimize"]
        return [default_direction(obj.metric)]
    if isinstance(obj, WeightedObjective):
        return [obj.direction]
    return list(obj.directions) or [default_direction(m) for m in objective_metrics(tune, cfg, spec)]
