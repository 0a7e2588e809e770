"""Models registered by name; the pipeline's ``model.name`` picks one, ``model.params`` configures it."""

from __future__ import annotations

from typing import Any

from recsys_mtl.models.base import ModelContext, MultiTaskModel, wraps_task_inputs
from recsys_mtl.errors import SpecError
from recsys_mtl.registry import Registry

MODELS: Registry[MultiTaskModel] = Registry("model", "model")
register = MODELS.register

#: encoder options that add to the logits after the towers: the family must keep the standard
#: encoder → task inputs → towers forward (see wraps_task_inputs)
LOGIT_OPTIONS = {"wide": "encoder.wide", "gbdt_leaves.margin": "encoder.gbdt_leaves.margin"}


def available_models() -> list[str]:
    return MODELS.names()


def model_class(name: str) -> type[MultiTaskModel]:
    return MODELS.get(name)


def build_model(name: str, params: dict[str, Any], context: ModelContext) -> MultiTaskModel:
    """The model ``name`` with ``params``, built on ``context`` (layout, tasks, encoder section).

    An encoder option set in ``context.encoder`` that the family does not list in its
    ``encoder_options`` is refused, naming the option and the family.
    """
    cls = MODELS.get(name)
    enc = context.encoder
    for option in enc.set_options():
        if option not in cls.encoder_options:
            raise SpecError(f"encoder.{option}: model {name!r} does not take it (it takes "
                            f"{', '.join(sorted(cls.encoder_options))})")
    logit_options = [key for key, on in (("wide", enc.wide is not None),
                                         ("gbdt_leaves.margin", enc.gbdt_leaves is not None and enc.gbdt_leaves.margin)) if on]
    if logit_options and not (wraps_task_inputs(cls) or cls.adds_logit_options):
        raise SpecError(f"{LOGIT_OPTIONS[logit_options[0]]}: {name!r} has its own forward (not encoder → task inputs → "
                        "towers), so nothing can be added to its logits after the towers")
    config = MODELS.config(name, params)
    return cls(context, config)  # type: ignore[call-arg]
