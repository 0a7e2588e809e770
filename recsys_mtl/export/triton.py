"""A Triton Inference Server model repository (ONNX Runtime backend) for an exported model.

Layout::

    triton/<model_name>/config.pbtxt
    triton/<model_name>/1/model.onnx

Per-row scalar inputs and outputs are (B,) in the graph, so they are declared ``dims: [ 1 ]``
with ``reshape: { shape: [ ] }`` (Triton's convention for batch-only tensors); sequence inputs
are ``dims: [ -1 ]`` (any list width).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from serving.contract import ConditionSpec, InputSpec

_TRITON_TYPE = {"string": "TYPE_STRING", "float64": "TYPE_FP64", "float32": "TYPE_FP32"}


def model_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


def _tensor(name: str, dtype: str, dims: list[int]) -> str:
    shape = f"dims: [ {', '.join(map(str, dims))} ]" if dims else "dims: [ 1 ]\n    reshape: { shape: [ ] }"
    return f'  {{\n    name: "{name}"\n    data_type: {_TRITON_TYPE[dtype]}\n    {shape}\n  }}'


def config_pbtxt(name: str, inputs: list[InputSpec | ConditionSpec], outputs: list[dict[str, object]], max_batch_size: int,
                 max_queue_delay_us: int) -> str:
    ins = [_tensor(r.name, r.dtype, [-1] if r.kind == "sequence" else [int(d) for d in r.shape[1:]]) for r in inputs]
    outs = [_tensor(str(o["name"]), "float32", [int(d) for d in o["shape"][1:]]) for o in outputs]  # type: ignore[index,union-attr]
    return "\n".join([
        f'name: "{name}"',
        'backend: "onnxruntime"',
        f"max_batch_size: {max_batch_size}",
        "input [\n" + ",\n".join(ins) + "\n]",
        "output [\n" + ",\n".join(outs) + "\n]",
        f"dynamic_batching {{\n  max_queue_delay_microseconds: {max_queue_delay_us}\n}}",
        "instance_group [\n  {\n    count: 1\n    kind: KIND_CPU\n  }\n]",
        "",
    ])


def write_repository(root: Path, name: str, onnx_path: Path, inputs: list[InputSpec | ConditionSpec], outputs: list[dict[str, object]],
                     max_batch_size: int = 4096, max_queue_delay_us: int = 500) -> Path:
    """Write ``root/<name>/`` (config + version 1 model); returns the model folder."""
    folder = root / model_name(name)
    (folder / "1").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_path, folder / "1" / "model.onnx")
    (folder / "config.pbtxt").write_text(config_pbtxt(model_name(name), inputs, outputs, max_batch_size, max_queue_delay_us))
    return folder
