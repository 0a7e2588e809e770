"""``torch.onnx.export(..., dynamo=True)`` with the ONNX op registry built once per process.

Every public ``torch.onnx.export`` call rebuilds the aten → ONNX registry from torchlib (it
compiles the signatures of ~500 onnxscript functions): about 0.7 s of CPU per export, as much as
the rest of a small model's export. Torch 2.13 has no public way to pass a registry, so
:func:`export_program` calls the private ``_core.export`` that ``torch.onnx.export`` itself calls
(``_compat.export_compat``), with the same arguments and a registry kept in a per-process cache.
The registry is only read during an export (dispatch and the decomposition table look functions
up; only ``custom_translation_table``, which we never pass, registers more), so sharing it
changes nothing: tests check that both paths give byte-identical graphs.

The private path is taken only when the names and parameters it needs exist (feature detection);
otherwise, e.g. after a torch upgrade that moved them, the public ``torch.onnx.export`` runs.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Sequence

import onnx
import torch
from torch import nn


def _private_api() -> Any | None:
    """The torch exporter internals the cached path needs, or None when this torch lacks them."""
    try:
        from torch.onnx._internal.exporter import _constants, _core, _dynamic_shapes, _onnx_program, _registration
    except ImportError:
        return None
    needed = (
        "registry" in inspect.signature(_core.export).parameters
        and callable(getattr(_registration.ONNXRegistry, "from_torchlib", None))
        and callable(getattr(_dynamic_shapes, "convert_str_to_export_dim", None))
        and callable(getattr(_onnx_program.ONNXProgram, "_rename_dynamic_axes", None))
        and isinstance(getattr(_constants, "TORCHLIB_OPSET", None), int)
    )
    return (_constants, _core, _dynamic_shapes, _registration) if needed else None


@functools.cache
def _registry(opset: int) -> Any:
    """The torchlib registry for ``opset``, built on first use (as ``export_compat`` builds it)."""
    api = _private_api()
    assert api is not None
    constants, _, _, registration = api
    # export_compat: an opset below torchlib's own gets torchlib's registry (then a version conversion)
    return registration.ONNXRegistry.from_torchlib(opset_version=max(opset, constants.TORCHLIB_OPSET))


def cached_registry_available() -> bool:
    """Whether this torch offers what :func:`export_program` needs to reuse the registry."""
    return _private_api() is not None


def export_program(module: nn.Module, args: tuple[torch.Tensor, ...], *, input_names: Sequence[str],
                   output_names: Sequence[str], dynamic_shapes: tuple[Any, ...], opset: int) -> onnx.ModelProto:
    """``module`` on the positional tensors ``args`` as an ONNX model, exactly as
    ``torch.onnx.export(module, args, dynamo=True, verbose=False, ...)`` returns it."""
    api = _private_api()
    if api is None:
        program = torch.onnx.export(module, args, None, input_names=list(input_names), output_names=list(output_names),
                                    dynamic_shapes=dynamic_shapes, opset_version=opset, dynamo=True, verbose=False)
        assert program is not None
        return program.model_proto
    _, core, dynamic, _ = api
    # the steps export_compat runs for our arguments (positional tensors, no dynamic_axes, no kwargs)
    shapes, rename_axes = dynamic.convert_str_to_export_dim(dynamic_shapes)
    program = core.export(module, args, None, registry=_registry(opset), dynamic_shapes=shapes,
                          input_names=list(input_names), output_names=list(output_names), verbose=False,
                          opset_version=opset)
    if rename_axes:
        program._rename_dynamic_axes(dynamic_shapes)
    return program.model_proto
