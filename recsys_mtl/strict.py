"""The pydantic bases of every set of user parameters (lowest floor: feature kinds, the spec, the
pipeline sections, models, balancers and encoder options all build on them).

A parameter is documented in one way only: the string right under its field (pydantic's attribute
docstrings, ``use_attribute_docstrings``), which becomes the field's ``description``. ``recsys-mtl
list --params`` and docs/parameters.md read nothing else, and a test fails on a field without one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict
from pydantic_core import PydanticUndefined


class ParamsModel(BaseModel):
    """``extra="forbid"`` so a typo in the YAML is an error, never a silently ignored key; each
    field's docstring is its description."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class StrictModel(ParamsModel):
    """A :class:`ParamsModel` whose parsed values are immutable (spec and pipeline sections)."""

    model_config = ConfigDict(frozen=True)


@dataclass(frozen=True)
class ParamInfo:
    """One parameter of a :class:`ParamsModel`, for ``recsys-mtl list --params``."""

    name: str
    type: str
    default: str
    description: str


def _type_name(t: Any) -> str:
    """A field type as a reader writes it: ``list[int]``, ``CrossConfig | None``, ``Literal['a', 'b']``."""
    origin, args = get_origin(t), get_args(t)
    if t is type(None):
        return "None"
    if t is Ellipsis:
        return "..."
    if origin is Annotated:
        return _type_name(args[0])
    if origin is Union or origin is UnionType:
        return " | ".join(_type_name(a) for a in args)
    if origin is Literal:
        return f"Literal[{', '.join(repr(a) for a in args)}]"
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(_type_name(a) for a in args)}]"
    return t.__name__ if isinstance(t, type) else str(t).replace("typing.", "")


def _default_repr(value: Any) -> str:
    # a nested group's default names only what differs from that group's own defaults
    if isinstance(value, PurePath):
        return repr(str(value))
    if isinstance(value, BaseModel):
        changed = value.model_dump(exclude_defaults=True)
        return f"{type(value).__name__}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"
    return repr(value)


def param_infos(config: type[BaseModel]) -> list[ParamInfo]:
    """Name, type, default and description (its docstring) of every field of ``config``."""
    out = []
    for key, f in config.model_fields.items():
        if f.default is not PydanticUndefined:
            default = _default_repr(f.default)
        elif f.default_factory is not None:
            default = _default_repr(f.default_factory())  # type: ignore[call-arg]
        else:
            default = "(required)"
        out.append(ParamInfo(key, _type_name(f.annotation), default, " ".join((f.description or "").split())))
    return out


def nested_params(config: type[BaseModel]) -> list[type[BaseModel]]:
    """The pydantic classes reachable from ``config``'s field types (a field typed ``CrossConfig``,
    ``list[Task]``, ``A | B | None``, ...), each once, depth first; ``config`` itself excluded."""
    seen: list[type[BaseModel]] = []

    def visit(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation is not config and annotation not in seen:
                seen.append(annotation)
                for f in annotation.model_fields.values():
                    visit(f.annotation)
            return
        for arg in get_args(annotation):
            visit(arg)

    for f in config.model_fields.values():
        visit(f.annotation)
    return seen
