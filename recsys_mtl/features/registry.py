"""Feature kinds registered by name, found by scanning :mod:`recsys_mtl.features.kinds`: adding a
kind is one module there (plus one row in ``tests/features/test_feature_kinds.py``)."""

from __future__ import annotations

from functools import cache
from typing import Any, Callable, TypeVar

from recsys_mtl.features.base import FeatureKind
from recsys_mtl.registry import discover

K = TypeVar("K", bound=type[FeatureKind[Any]])

_KINDS: dict[str, FeatureKind[Any]] = {}


def register(cls: K) -> K:
    """Class decorator: one instance of the kind, under ``cls.name``."""
    if cls.name in _KINDS:
        raise ValueError(f"feature kind {cls.name!r} is registered twice")
    _KINDS[cls.name] = cls()
    return cls


@cache
def kinds() -> tuple[FeatureKind[Any], ...]:
    """Every kind, in channel order (``order``)."""
    discover("recsys_mtl.features.kinds")
    return tuple(sorted(_KINDS.values(), key=lambda k: (k.order, k.name)))


def kind_of(feature: Any) -> FeatureKind[Any]:
    """The kind object of a spec feature (by its ``kind`` field)."""
    kinds()
    return _KINDS[feature.kind]


def for_each(features: list[Any]) -> list[tuple[FeatureKind[Any], Any]]:
    """(kind, feature) pairs in encoded-channel order: kinds by ``order``, features in spec order."""
    return [(k, f) for k in kinds() for f in features if f.kind == k.name]


def grouped(features: list[Any]) -> list[tuple[FeatureKind[Any], list[Any]]]:
    """(kind, its features in spec order) for every kind present, in channel order."""
    return [(k, fs) for k in kinds() if (fs := [f for f in features if f.kind == k.name])]


def describe_kinds(fmt: Callable[[FeatureKind[Any]], str] = lambda k: f"{k.name}: {k.summary}") -> list[str]:
    return [fmt(k) for k in kinds()]
