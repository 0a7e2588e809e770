"""A small typed name → class registry, used for models and balancing strategies."""

from __future__ import annotations

import difflib
from typing import Any, Callable, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from recsys_mtl.errors import SpecError

T = TypeVar("T")


def did_you_mean(name: str, choices: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or an empty string."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


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

    def config(self, name: str, params: dict[str, Any]) -> BaseModel:
        """Validate ``params`` against the class's ``Config``; errors name ``<field>.params.<key>``."""
        cls = self.get(name)
        try:
            return cls.Config.model_validate(params)  # type: ignore[attr-defined]
        except ValidationError as exc:
            known = list(cls.Config.model_fields)  # type: ignore[attr-defined]
            msgs = [
                ".".join([f"{self.field}.params", *map(str, e["loc"])]) + ": "
                + (f"unknown parameter{did_you_mean(str(e['loc'][-1]), known)}" if e["type"] == "extra_forbidden"
                   else e["msg"].removeprefix("Value error, "))
                for e in exc.errors()
            ]
            raise SpecError(f"{self.kind} {name!r}: " + "; ".join(msgs)) from None
