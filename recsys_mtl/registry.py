"""A small typed name → class registry, used for models and balancing strategies."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Callable, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from recsys_mtl.errors import SpecError, did_you_mean, format_validation_error
from recsys_mtl.strict import ParamInfo, param_infos

T = TypeVar("T")


def discover(package: str) -> None:
    """Import every module of ``package`` so that their ``@register`` decorators run.

    Adding a model or a strategy is then one new file: no import list to keep by hand.
    """
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")


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
        """The parameters ``<field>.params`` accepts: the fields of the class's typed ``Config``,
        each described by its docstring."""
        return param_infos(self.get(name).Config)  # type: ignore[attr-defined]

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
            out += [f"### `{n}`", "", f"`{reg.field}.params`:", "", *params_table(reg.params(n))]
    return "\n".join(out)


def params_table(params: list[ParamInfo]) -> list[str]:
    """A markdown table of parameters, then a blank line (``|`` in a cell escaped, as GFM needs)."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    rows = ["| param | type | default | meaning |", "|---|---|---|---|"]
    return rows + [f"| {p.name} | `{cell(p.type)}` | `{cell(p.default)}` | {cell(p.description)} |" for p in params] + [""]
