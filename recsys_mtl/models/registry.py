"""Models registered by name; the pipeline's ``model.name`` picks one, ``model.params`` configures it."""

from __future__ import annotations

from typing import Any

from recsys_mtl.models.base import ModelContext, MultiTaskModel, wraps_task_inputs
from recsys_mtl.errors import SpecError
from recsys_mtl.nn.cross import CrossedEncoder
from recsys_mtl.registry import Registry

MODELS: Registry[MultiTaskModel] = Registry("model", "model")
register = MODELS.register


def available_models() -> list[str]:
    return MODELS.names()


def model_class(name: str) -> type[MultiTaskModel]:
    return MODELS.get(name)


def build_model(name: str, params: dict[str, Any], context: ModelContext) -> MultiTaskModel:
    config = MODELS.config(name, params)
    model = MODELS.get(name)(context, config)  # type: ignore[call-arg]
    if getattr(config, "cross", None) is not None and not isinstance(getattr(model, "encoder", None), CrossedEncoder):
        raise SpecError(f"model.params.cross: {name!r} does not read the flat encoded vector (it uses "
                        "feature tokens or per-feature embeddings), so a cross network cannot be its bottom")
    gbdt = getattr(config, "gbdt_leaves", None)
    if gbdt is not None and gbdt.margin and not wraps_task_inputs(type(model)):
        raise SpecError(f"model.params.gbdt_leaves.margin: {name!r} has its own forward (not encoder → task inputs → "
                        "towers), so the trees' scores cannot be added to its logits; use leaf inputs alone (margin: false)")
    return model
