"""A small typed name → class registry, used for models and balancing strategies."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticUndefined

from recsys_mtl.errors import SpecError, did_you_mean, format_validation_error

T = TypeVar("T")


@dataclass(frozen=True)
class ParamInfo:
    """One parameter of a registered component's ``Config``, for ``recsys-mtl list --params``."""

    name: str
    type: str
    default: str
    description: str


def discover(package: str) -> None:
    """Import every module of ``package`` so that their ``@register`` decorators run.

    Adding a model or a strategy is then one new file: no import list to keep by hand.
    """
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")


_FIELD_LINE = re.compile(r"^\s+(\w+)\s*:")


def comment_docs(cls: type) -> dict[str, str]:
    """``{field: text}`` from ``#:`` comment lines right above each field in the class bodies of
    ``cls`` and its bases (the convention the configs use), for fields without a description."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            lines = inspect.getsource(klass).splitlines()
        except (OSError, TypeError):
            continue
        pending: list[str] = []
        for line in lines:
            stripped = line.strip()
            if stripped.startswith("#:"):
                pending.append(stripped[2:].strip())
            elif (m := _FIELD_LINE.match(line)) and pending:
                docs[m.group(1)] = " ".join(pending)
                pending = []
            elif stripped:
                pending = []
    return docs


_TABLE_ROW = re.compile(r"^\|\s*`?([\w, ]+?)`?\s*\|[^|]*\|\s*(.+?)\s*\|$")


def table_docs(cls: type) -> dict[str, str]:
    """``{param: meaning}`` from the ``| param | default | meaning |`` tables of the class docstrings."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):  # a variant (CGC) inherits its base's table
        for line in (klass.__doc__ or "").splitlines():
            if (m := _TABLE_ROW.match(line.strip())) and m.group(1) != "param":
                for name in m.group(1).split(","):  # one row may describe several parameters
                    docs[name.strip()] = m.group(2)
    return docs


def _type_name(annotation: Any) -> str:
    return annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")


class Registry(Generic[T]):
    """Classes registered under a name; each class carries a pydantic ``Config`` for its params."""

    def __init__(self, kind: str, field: str):
        self.kind = kind  # e.g. "model"
        self.field = field  # pipeline field, e.g. "model"
        self._items: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def deco(cls: type[T]) -> type[T]:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = cls
            return cls

        return deco

    def names(self) -> list[str]:
        return sorted(self._items)

    def get(self, name: str) -> type[T]:
        try:
            return self._items[name]
        except KeyError:
            raise SpecError(
                f"{self.field}.name: unknown {self.kind} {name!r}{did_you_mean(name, self.names())} "
                f"(available: {', '.join(self.names())})"
            ) from None

    def summary(self, name: str) -> str:
        """The first line of the class docstring."""
        paragraph = " ".join((self.get(name).__doc__ or "").strip().split("\n\n")[0].split())
        return paragraph.split(". ")[0].rstrip(".")

    def params(self, name: str) -> list[ParamInfo]:
        """The parameters ``<field>.params`` accepts, from the class's typed ``Config``."""
        cls = self.get(name)
        config = cls.Config  # type: ignore[attr-defined]
        # a table is written once per Config: variants sharing one (OMoE with MMoE) reuse it
        siblings = [c for c in self._items.values() if getattr(c, "Config", None) is config and c is not cls]
        comments = {**comment_docs(config)}
        for klass in [*siblings, cls]:
            comments.update(table_docs(klass))
        out = []
        for key, f in config.model_fields.items():
            if f.default is not PydanticUndefined:
                default = repr(f.default)
            elif f.default_factory is not None:
                default = repr(f.default_factory())  # type: ignore[call-arg]
            else:
                default = "(required)"
            out.append(ParamInfo(key, _type_name(f.annotation), default, f.description or comments.get(key, "")))
        return out

    def config(self, name: str, params: dict[str, Any]) -> BaseModel:
        """Validate ``params`` against the class's ``Config``; errors name ``<field>.params.<key>``."""
        cls = self.get(name)
        try:
            return cls.Config.model_validate(params)  # type: ignore[attr-defined]
        except ValidationError as exc:
            msg = format_validation_error(exc, prefix=f"{self.field}.params", raw=params, model=cls.Config,  # type: ignore[attr-defined]
                                          unknown="unknown parameter", sep="; ")
            raise SpecError(f"{self.kind} {name!r}: {msg}") from None


def components_markdown(registries: list[Registry[Any]], params: bool = False) -> str:
    """Markdown of registered components: a table of names and summaries per registry, and with
    ``params`` a parameter table per component. ``docs/parameters.md`` is this text."""
    out: list[str] = []
    for reg in registries:
        out += [f"## {reg.kind}s (`{reg.field}.name`)", "", "| name | what it is |", "|---|---|"]
        out += [f"| `{n}` | {reg.summary(n)} |" for n in reg.names()]
        out.append("")
        if not params:
            continue
        for n in reg.names():
            out += [f"### `{n}`", "", f"`{reg.field}.params`:", "", "| param | type | default | meaning |", "|---|---|---|---|"]
            out += [f"| {p.name} | `{p.type}` | `{p.default}` | {p.description} |" for p in reg.params(n)]
            out.append("")
    return "\n".join(out)
