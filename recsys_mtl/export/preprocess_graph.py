"""The fitted :class:`~recsys_mtl.data.preprocess.Preprocessor` as an ONNX graph: raw columns in,
the encoded tensors the model consumes out.

Inputs (one per spec column, named as the column, batch axis ``batch``):

* categorical column: ``string`` (B,); a missing value is the empty string ``""``
  (:data:`NULL_TOKEN`).
* numeric column: ``double`` (B,); a missing value is ``NaN``.
* sequence (multi-hot) column: ``string`` (B, L) with any L; lists shorter than L are padded with
  ``""``; the output width is the spec's ``max_len`` (short inputs padded, items past it unused).

The inputs are described by :class:`serving.contract.InputSpec` (also ``metadata.json``'s entries):
one per raw column, whichever features read it (each feature kind declares the columns it reads and
their input type; a column read by several features is one input). Each kind builds its own
subgraph (``FeatureKind.graph``); this module wires them into the encoded channels.

Outputs, exactly :meth:`Preprocessor.transform`'s columns: ``categorical`` (B, C) int64,
``numeric`` (B, M) float32, ``seq.<name>`` (B, max_len) int64 (each only when non-empty).

Numbers go through the same steps in float64 as the Python reference (impute → clip → signed
log1p → standardize or quantile buckets) and are cast to float32 last, so the two agree to the
last bit except where ``Log(1 + |x|)`` and ``numpy.log1p`` differ by an ulp.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.data.tensors import SEQ_PREFIX
from recsys_mtl.features.base import Columns
from recsys_mtl.features.graph import (
    ML_DOMAIN, ML_OPSET, MS_DOMAIN, MS_OPSET, ExportError, GraphBuilder, bucket_thresholds, stack,
)
from recsys_mtl.features.registry import for_each, kind_of
from serving.contract import NULL_TOKEN, InputSpec

__all__ = ["NULL_TOKEN", "ExportError", "bucket_thresholds", "build_preprocess_graph", "encoded_names", "raw_inputs"]


def raw_inputs(pre: Preprocessor) -> list[InputSpec]:
    """The raw input columns (what ``metadata.json`` lists), one per column in the order features
    first read them (spec feature order); a sequence column read by several features keeps the
    widest window (each feature's graph cuts its own)."""
    out: dict[str, InputSpec] = {}
    for f in pre.spec.features:
        for inp in kind_of(f).inputs(f):
            seen = out.get(inp.name)
            if seen is None or (inp.max_len or 0) > (seen.max_len or 0):
                out[inp.name] = inp if seen is None else InputSpec(inp.name, seen.feature, inp.kind, inp.max_len, inp.separator)
    return list(out.values())


def encoded_names(pre: Preprocessor) -> list[str]:
    """Names of the encoded tensors the model takes (empty ones left out), in a fixed order."""
    lay = pre.layout
    names = ["categorical"] if lay.categorical else []
    if lay.numeric or lay.indicators:
        names.append("numeric")
    return names + [SEQ_PREFIX + name for name, *_ in lay.sequences]


def build_preprocess_graph(pre: Preprocessor, opset: int) -> onnx.ModelProto:
    """The ONNX model: raw columns (see module docstring) → encoded tensors of :func:`encoded_names`."""
    b = GraphBuilder(opset=opset)
    inputs = raw_inputs(pre)
    onnx_type = {"string": TensorProto.STRING, "float64": TensorProto.DOUBLE}
    graph_inputs = [helper.make_tensor_value_info(r.name, onnx_type[r.dtype], r.shape) for r in inputs]

    cols: Columns[str] = Columns()
    for kind, f in for_each(pre.spec.features):
        cols.extend(kind.graph(f, b, pre.fitted))

    outputs: list[onnx.ValueInfoProto] = []
    if cols.categorical:
        b.nodes.append(helper.make_node("Identity", [stack(b, cols.categorical, "categorical")], ["categorical"]))
        outputs.append(helper.make_tensor_value_info("categorical", TensorProto.INT64, ["batch", len(cols.categorical)]))
    numeric = cols.numeric + cols.indicators
    if numeric:
        b.nodes.append(helper.make_node("Identity", [stack(b, numeric, "numeric")], ["numeric"]))
        outputs.append(helper.make_tensor_value_info("numeric", TensorProto.FLOAT, ["batch", len(numeric)]))
    for name, *_ in pre.layout.sequences:
        b.nodes.append(helper.make_node("Identity", [cols.sequences[name]], [SEQ_PREFIX + name]))
        width = next(max_len for n, _, max_len, _ in pre.layout.sequences if n == name)
        outputs.append(helper.make_tensor_value_info(SEQ_PREFIX + name, TensorProto.INT64, ["batch", width]))

    graph = helper.make_graph(b.nodes, "preprocess", graph_inputs, outputs, initializer=b.initializers)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(ML_DOMAIN, ML_OPSET),
                       helper.make_opsetid(MS_DOMAIN, MS_OPSET)],
        producer_name="recsys_mtl.export",
    )
    return model
