"""Any :class:`~recsys_mtl.models.MultiTaskModel` as an ONNX graph over the encoded tensors.

The model's ``{task: logits}`` dict becomes one named output per task, already turned into what a
caller wants: a probability (binary, sigmoid), class probabilities (multiclass, softmax) or the
value itself (regression). Only the encoded tensors the layout actually uses are graph inputs;
empty ones (e.g. no numeric column) are rebuilt inside as (B, 0) tensors.
"""

from __future__ import annotations

import logging
import warnings
from typing import Callable, Sequence

import onnx
import torch
from torch import Tensor, nn

from recsys_mtl.data.tensors import Batch
from recsys_mtl.export.dynamo_export import export_program
from recsys_mtl.models.base import MultiTaskModel
from recsys_mtl.spec.features import Task

#: task type → what its output is and how logits become it.
OUTPUT_ACTIVATIONS: dict[str, tuple[str, Callable[[Tensor], Tensor]]] = {
    "binary": ("probability", torch.sigmoid),
    "multiclass": ("class probabilities", lambda x: torch.softmax(x, dim=-1)),
    "regression": ("value", lambda x: x),
}
#: model opset; the preprocessing graph is built with the same default-domain opset.
OPSET = 20


class ScoringHead(nn.Module):
    """Positional encoded tensors (in ``input_names`` order) → tuple of per-task outputs.

    ``compute_dtype`` runs the model in another float precision (e.g. float16); inputs and
    outputs stay float32 so the graph's interface never changes. ``calibration`` (task →
    ``{"a", "b"}``, see :mod:`recsys_mtl.train.calibration`) maps a binary task's logit to
    ``a·z + b`` before the sigmoid, so the calibrated probability is what the graph serves.
    """

    def __init__(self, model: MultiTaskModel, tasks: Sequence[Task], input_names: Sequence[str],
                 compute_dtype: torch.dtype = torch.float32, calibration: dict[str, dict[str, float]] | None = None):
        super().__init__()
        self.calibration = {t: (float(p["a"]), float(p["b"])) for t, p in (calibration or {}).items()}
        self.model = model.to(compute_dtype).eval()
        self.input_names = list(input_names)
        self.tasks = list(tasks)
        self.compute_dtype = compute_dtype
        self.activations = [OUTPUT_ACTIVATIONS[t.type][1] for t in self.tasks]

    def batch(self, inputs: Sequence[Tensor]) -> Batch:
        batch = dict(zip(self.input_names, inputs))
        rows = inputs[0].shape[0]
        batch.setdefault("categorical", torch.zeros(rows, 0, dtype=torch.int64, device=inputs[0].device))
        batch.setdefault("numeric", torch.zeros(rows, 0, dtype=torch.float32, device=inputs[0].device))
        batch["numeric"] = batch["numeric"].to(self.compute_dtype)
        return batch

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        logits = {k: v.float() for k, v in self.model(self.batch(inputs)).items()}
        for name, (a, b) in self.calibration.items():
            logits[name] = logits[name] * a + b
        return tuple(act(logits[t.name]) for t, act in zip(self.tasks, self.activations))


def export_model(head: ScoringHead, example: Sequence[Tensor]) -> onnx.ModelProto:
    """Export with a dynamic batch axis (named ``batch``); outputs are named after the tasks.

    The ONNX op registry is shared by the exports of a process (:mod:`recsys_mtl.export.dynamo_export`).
    The trace runs under ``torch.no_grad()``: the graph is the same (tests compare bytes), and
    tracing skips the autograd bookkeeping it would otherwise record for the parameters (~4% fewer
    Python calls per export).
    """
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        quiet = logging.getLogger("torch.onnx")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            return export_program(
                head,
                tuple(example),
                input_names=head.input_names,
                output_names=[t.name for t in head.tasks],
                dynamic_shapes=(tuple({0: batch} for _ in example),),  # one entry: the *inputs tuple
                opset=OPSET,
            )
        finally:
            quiet.setLevel(level)
