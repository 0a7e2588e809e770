"""Multitask models: one contract (encoded batch in, one logit tensor per task out), built by name.

Importing this package registers every model family in it: each module registers its own
classes, and :func:`~recsys_mtl.registry.discover` imports them all.
"""

from recsys_mtl.models.base import ModelContext, MultiTaskModel
from recsys_mtl.models.registry import MODELS, available_models, build_model, model_class
from recsys_mtl.registry import discover

discover(__name__)

__all__ = ["MODELS", "ModelContext", "MultiTaskModel", "available_models", "build_model", "model_class"]
