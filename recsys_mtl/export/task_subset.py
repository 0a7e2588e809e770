"""Task-sparse scoring: a copy of a model that computes only what a chosen subset of tasks reads.

Two mechanisms, applied together:

- Graph level (every family): the ONNX export traces only the selected tasks' outputs, and
  ``torch.export`` drops every op those outputs do not depend on: the other tasks' towers and
  gates, and expert banks only the other tasks read (e.g. PLE's last-level task experts).
- Model level (the model's own :meth:`~recsys_mtl.models.base.MultiTaskModel.for_tasks`): a
  family removes what *is* wired into a selected task's computation but contributes exactly
  zero (HoME: the experts every selected gate masks out on its last level, with the gates sliced
  to match). Every other family returns itself.

:func:`graph_stats` measures a graph (nodes, initializers, parameters, bytes) so the subset can
be compared with the full graph.
"""

from __future__ import annotations

import copy
from typing import Sequence

import onnx
from onnx import numpy_helper

from recsys_mtl.errors import SpecError
from recsys_mtl.models.base import MultiTaskModel


def check_tasks(available: Sequence[str], tasks: Sequence[str]) -> list[str]:
    """Validate a task subset; returns it in the model's task order."""
    if not tasks:
        raise SpecError("--tasks: choose at least one task")
    unknown = [t for t in tasks if t not in available]
    if unknown:
        raise SpecError(f"--tasks: unknown task(s) {unknown} (tasks of this run: {', '.join(available)})")
    return [t for t in available if t in set(tasks)]


def subset_model(model: MultiTaskModel, tasks: Sequence[str]) -> MultiTaskModel:
    """A pruned deep copy of ``model`` for ``tasks`` (the original is untouched); outputs for the
    selected tasks are identical, outputs for the others are meaningless and must not be read."""
    return copy.deepcopy(model).eval().for_tasks(tasks)


def graph_stats(model: onnx.ModelProto) -> dict[str, int]:
    """Nodes, initializers, parameter count and serialized bytes of an ONNX model."""
    inits = model.graph.initializer
    return {
        "nodes": len(model.graph.node),
        "initializers": len(inits),
        "parameters": int(sum(numpy_helper.to_array(i).size for i in inits)),
        "bytes": model.ByteSize(),
    }
