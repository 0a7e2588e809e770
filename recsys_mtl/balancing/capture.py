"""Capture of the shared representation of a training forward, for the gradient strategies."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class SharedCapture:
    """Holds the latest training-time output of ``model.shared_module()`` via a forward hook.

    Works for any :class:`~recsys_mtl.models.base.MultiTaskModel`: a model names its shared module
    (MMoE: the experts, (B, E, H); Shared-Bottom: the bottom, (B, H)); the default is the encoder,
    (B, D). Only grad-enabled forwards in training mode are kept, and :meth:`pop` releases the
    tensor, so no graph outlives its step. When the module's forward never runs (models that
    read ``encoder.feature_embeddings`` directly), :attr:`params` is the fallback target.
    """

    def __init__(self, model: nn.Module):
        getter = getattr(model, "shared_module", None)
        module: nn.Module = getter() if callable(getter) else model
        self.params = [p for p in module.parameters() if p.requires_grad]
        self._out: Tensor | None = None
        self._handle = module.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, args: Any, output: Any) -> None:
        if module.training and torch.is_grad_enabled() and isinstance(output, Tensor) and output.requires_grad:
            self._out = output

    def pop(self) -> Tensor | None:
        out, self._out = self._out, None
        return out

    def remove(self) -> None:
        self._handle.remove()
