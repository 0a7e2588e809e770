"""Models registered by name; the pipeline's ``model.name`` picks one, ``model.params`` configures it."""

from __future__ import annotations

from typing import Any

from recsys_mtl.models.base import ModelContext, MultiTaskModel
from recsys_mtl.registry import Registry

MODELS: Registry[MultiTaskModel] = Registry("model", "model")
register = MODELS.register


def available_models() -> list[str]:
    return MODELS.names()


def model_class(name: str) -> type[MultiTaskModel]:
    return MODELS.get(name)


def build_model(name: str, params: dict[str, Any], context: ModelContext) -> MultiTaskModel:
    return MODELS.get(name)(context, MODELS.config(name, params))  # type: ignore[call-arg]
