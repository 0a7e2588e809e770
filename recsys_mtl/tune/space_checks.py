"""Checks of a study against its pipeline before any data is read or trial runs."""

from __future__ import annotations

from typing import Any

from recsys_mtl.errors import SpecError
from recsys_mtl.spec.features import FeatureSpec
from recsys_mtl.spec.pipeline import PipelineConfig
from recsys_mtl.tune.params import CategoricalParam, IntParam, Param
from recsys_mtl.tune.paths import FAMILY_REGISTRIES, TUNABLE_SECTIONS, get_path, resolve
from recsys_mtl.tune.space import TuneConfig


def check_space(tune: TuneConfig, cfg: PipelineConfig, spec: FeatureSpec, source: str) -> None:
    """Fail (SpecError naming the field) on anything a trial would trip over, before any trial runs."""
    cfg_raw = cfg.model_dump(mode="python")
    seen: list[str] = []
    for path, param in tune.space.items():
        where = f"{source}: tune.space.{path}"
        section = path.split(".", 1)[0]
        if section not in TUNABLE_SECTIONS:
            raise SpecError(f"{where}: not tunable (only {', '.join(p + '.*' for p in TUNABLE_SECTIONS)}; data and spec are encoded once per study)")
        if path.count(".") == 0 or path in (f"{s}.params" for s in FAMILY_REGISTRIES):
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
        for path, value in assignment.items():
            # Optuna would fail such a trial with empty params and run one of the study's own instead
            if not tune.space[path].contains(value):
                raise SpecError(f"{source}: tune.enqueue[{i}].{path}: {value!r} is outside the search space "
                                f"({describe_param(tune.space[path])})")
    try:
        resolve(cfg, dict(tune.trial_overrides))
    except SpecError as exc:
        raise SpecError(f"{source}: tune.trial_overrides: {exc}") from None
    known = known_metrics(spec)
    for metric in tune.objective.objective_metrics(cfg, spec):
        if metric not in known:
            raise SpecError(f"{source}: tune.objective: unknown metric {metric!r} (known: {', '.join(sorted(known))})")


def describe_param(param: Param) -> str:
    """A parameter's search range in words, for error messages."""
    if isinstance(param, CategoricalParam):
        return f"one of {param.choices!r}"
    scale = ", log scale" if param.log else ""
    step = f", step {param.step}" if param.step is not None and not (isinstance(param, IntParam) and param.step == 1) else ""
    kind = "integer" if isinstance(param, IntParam) else "number"
    return f"{kind} in [{param.low}, {param.high}]{scale}{step}"


def _contexts(path: str, param: Param, tune: TuneConfig, cfg_raw: dict[str, Any]) -> list[dict[str, Any]]:
    """Family choices a parameter under ``model.params`` / ``balancing.params`` is checked with."""
    section = path.split(".", 1)[0]
    name_path = f"{section}.name"
    if section not in FAMILY_REGISTRIES or name_path not in tune.space or path == name_path:
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
