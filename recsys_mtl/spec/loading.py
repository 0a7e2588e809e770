"""Load YAML specs and pipelines; every error names the file and the field at fault."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, TypeVar

from pydantic import BaseModel, ValidationError

from recsys_mtl.errors import SpecError, format_validation_error
from recsys_mtl.spec.features import FeatureSpec
from recsys_mtl.spec.pipeline import PipelineConfig
from recsys_mtl.spec.yaml_io import load_yaml_text, read_yaml_file
from serving.limits import first_int64_overflow

M = TypeVar("M", bound=BaseModel)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping file, read within :mod:`recsys_mtl.spec.yaml_io`'s limits."""
    path = Path(path)
    raw = read_yaml_file(path)
    if raw is None:
        raise SpecError(f"{path}: file is empty")
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return raw


def validate(model: type[M], raw: dict[str, Any], source: str | Path) -> M:
    overflow = first_int64_overflow(raw)
    if overflow:  # pydantic takes any Python int; numpy and torch hold them as int64
        raise SpecError(f"{source}: {overflow[0]}: {overflow[1]}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc, source=source, raw=raw, model=model)) from None
    except SpecError as exc:  # raised by cross-field checks (e.g. LeakageError): keep its type
        raise type(exc)(f"{source}: {exc}") from None


def load_spec(path: str | Path) -> FeatureSpec:
    return validate(FeatureSpec, read_yaml(path), path)


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str], source: str | Path) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML) to a raw pipeline mapping."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SpecError(f"override {item!r}: expected KEY.PATH=VALUE")
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise SpecError(f"{source}: override {item!r}: {part!r} is not a mapping")
        node[leaf] = load_yaml_text(value, f"override {item!r}")
    return raw


def resolve_paths(model: M, base: Path) -> M:
    """A copy of ``model`` whose relative ``Path`` fields (nested models included) are under ``base``.

    Fields are found by the type of their value, so a new data kind's path fields resolve
    without being listed anywhere.
    """
    updates: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, Path) and not value.is_absolute():
            updates[name] = base / value
        elif isinstance(value, BaseModel):
            updates[name] = resolve_paths(value, base)
    return model.model_copy(update=updates)


def load_pipeline(path: str | Path, overrides: Iterable[str] = ()) -> tuple[PipelineConfig, FeatureSpec]:
    """Load a pipeline and its spec; relative paths are resolved against the pipeline's folder."""
    path = Path(path)
    raw = apply_overrides(read_yaml(path), overrides, path)
    cfg = validate(PipelineConfig, raw, path)
    base = path.resolve().parent
    updates: dict[str, Any] = {"spec": base / cfg.spec}
    if not cfg.runs_dir.is_absolute():
        updates["runs_dir"] = Path.cwd() / cfg.runs_dir
    updates["data"] = resolve_paths(cfg.data, base)
    cfg = cfg.model_copy(update=updates)
    return cfg, load_spec(cfg.spec)
