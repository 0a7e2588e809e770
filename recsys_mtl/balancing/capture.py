"""Capture of the shared representation(s) of a training forward, for the gradient strategies."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


def shared_modules(model: nn.Module) -> list[nn.Module]:
    """The modules whose outputs form the model's shared representation (see ``MultiTaskModel``)."""
    getter = getattr(model, "shared_modules", None)
    if callable(getter):
        return list(getter())
    single = getattr(model, "shared_module", None)
    return [single()] if callable(single) else [model]


def sparse_parameter_ids(model: nn.Module) -> set[int]:
    """Ids of embedding weights trained with sparse gradients (``trainer.embedding_optimizer``)."""
    return {
        id(m.weight) for m in model.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag)) and m.sparse
    }


def shared_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Trainable parameters every task depends on (``MultiTaskModel.shared_parameters()``), less
    sparse-gradient embedding tables: a dense per-task gradient of a large table is what sparse
    training avoids, and a sparse optimizer refuses a dense gradient (they keep their plain one)."""
    getter = getattr(model, "shared_parameters", None)
    params = list(getter()) if callable(getter) else [p for m in shared_modules(model) for p in m.parameters()]
    seen: set[int] = sparse_parameter_ids(model)
    unique = []
    for p in params:
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            unique.append(p)
    return unique


class SharedCapture:
    """Holds the latest training-time output of each of ``model.shared_modules()`` via forward hooks.

    A model names its shared modules (MMoE: the experts, (B, E, H); PLE: the last level's shared
    experts; HoME: the last level's global and group experts, several tensors); the default is the
    encoder, (B, D). Only grad-enabled forwards in training mode are kept, and :meth:`pop`
    releases the tensors, so no graph outlives its step. :attr:`params` are the model's shared
    parameters, the target of ``on: shared_parameters`` and the fallback when no module ran.
    """

    def __init__(self, model: nn.Module):
        self.modules = shared_modules(model)
        self.params = shared_parameters(model)
        self._out: dict[int, Tensor] = {}
        self._handles = [m.register_forward_hook(self._hook(i)) for i, m in enumerate(self.modules)]

    def _hook(self, index: int):  # type: ignore[no-untyped-def]
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if module.training and torch.is_grad_enabled() and isinstance(output, Tensor) and output.requires_grad:
                self._out[index] = output

        return hook

    def pop(self) -> list[Tensor]:
        """This step's representation tensors, in ``shared_modules()`` order (empty when none ran)."""
        out, self._out = self._out, {}
        return [out[i] for i in sorted(out)]

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
