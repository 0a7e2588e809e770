"""Dotted paths into a pipeline: read and set them, apply a trial's values, sample a space in order."""

from __future__ import annotations

from typing import Any

import optuna
from pydantic import ValidationError

from recsys_mtl.balancing import BALANCERS
from recsys_mtl.errors import SpecError, format_validation_error
from recsys_mtl.models.registry import MODELS
from recsys_mtl.registry import Registry
from recsys_mtl.spec.pipeline import PipelineConfig
from recsys_mtl.tune.params import Param

#: pipeline sections a study may change; data and spec are fixed (encoded once per process).
TUNABLE_SECTIONS = ("model", "balancing", "trainer")
#: sections whose ``name`` picks a registered family that validates the section's ``params``
FAMILY_REGISTRIES: dict[str, Registry[Any]] = {"model": MODELS, "balancing": BALANCERS}


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
    for section, registry in FAMILY_REGISTRIES.items():
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
        raise SpecError(format_validation_error(exc, raw=raw, model=PipelineConfig, sep="; ")) from None
    for section, registry in FAMILY_REGISTRIES.items():
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
    for section, registry in FAMILY_REGISTRIES.items():
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
