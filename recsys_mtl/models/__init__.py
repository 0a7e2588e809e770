"""Multitask models: one contract (encoded batch in, one logit tensor per task out), built by name.

Importing this package registers every model family shipped with recsys_mtl.
"""

from recsys_mtl.models import moe, shared_bottom  # noqa: F401  (registration side effect)
from recsys_mtl.models import adatt, home, ple  # noqa: F401  (expert models)
from recsys_mtl.models import dtrn, ft_transformer, funnel, multitab, stem  # noqa: F401  (transformers, funnels, embeddings)
from recsys_mtl.models.base import ModelContext, MultiTaskModel
from recsys_mtl.models.registry import available_models, build_model, model_class

__all__ = ["ModelContext", "MultiTaskModel", "available_models", "build_model", "model_class"]
