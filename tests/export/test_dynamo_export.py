"""The export with a per-process ONNX op registry, traced under no_grad, gives the graph the public
torch.onnx.export gives."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.export import dynamo_export
from recsys_mtl.export.model_graph import OPSET, ScoringHead, export_model
from recsys_mtl.export.preprocess_graph import encoded_names
from recsys_mtl.models import build_model
from recsys_mtl.models.base import model_context
from tests.support.export import EXPORT_TRAIN
from tests.support.synthetic import synthetic_spec


def test_this_torch_offers_the_registry_reuse() -> None:
    # fails after a torch upgrade that moved the internals: exports then silently take the slower public path
    assert dynamo_export.cached_registry_available()


@pytest.mark.slow
def test_reused_registry_graph_is_byte_identical_to_the_public_export(monkeypatch: pytest.MonkeyPatch) -> None:
    """export_model (cached registry, trace under no_grad) gives the bytes the public
    torch.onnx.export gives with autograd on, as every export did before either change."""
    spec = synthetic_spec(2)
    pre = Preprocessor.fit(spec, EXPORT_TRAIN)
    torch.manual_seed(0)
    # gates, experts, towers and the categorical, numeric and sequence encoders in one small graph
    model = build_model("mmoe", {"num_experts": 2, "expert_hidden": [8]}, model_context(pre.layout, spec.tasks, None))
    names = encoded_names(pre)
    head = ScoringHead(model, spec.tasks, names)
    cols = pre.transform(EXPORT_TRAIN).columns()
    example = [cols[n][:2] for n in names]

    dynamo_export._registry(OPSET)  # built before the export below (here or by an earlier export of this process)
    hits = dynamo_export._registry.cache_info().hits
    reused = export_model(head, example)
    assert dynamo_export._registry.cache_info().hits == hits + 1

    public_calls: list[Any] = []
    public = torch.onnx.export

    def counted(*args: Any, **kwargs: Any) -> Any:
        public_calls.append(kwargs)
        return public(*args, **kwargs)

    monkeypatch.setattr(dynamo_export, "_private_api", lambda: None)  # as on a torch without the internals
    monkeypatch.setattr(torch.onnx, "export", counted)
    with torch.enable_grad():  # export_program itself, not export_model: the trace records autograd as before
        fallback = dynamo_export.export_program(head, tuple(example), input_names=names, output_names=[t.name for t in spec.tasks],
                                                dynamic_shapes=(tuple({0: torch.export.Dim("batch", min=1)} for _ in example),),
                                                opset=OPSET)
    assert len(public_calls) == 1 and public_calls[0]["dynamo"] is True
    assert reused.SerializeToString() == fallback.SerializeToString()
