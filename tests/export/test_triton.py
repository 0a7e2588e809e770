"""The Triton model repository: config.pbtxt parsed with Triton's own protobuf schema and checked
against the ONNX graph the way Triton's ONNX Runtime backend checks it at load time."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from serving.contract import InputSpec
from recsys_mtl.export.triton import config_pbtxt, write_repository
from tests.support.export import export_dir  # noqa: F401  (session fixture)

# ONNX element type -> the Triton data type its ONNX Runtime backend accepts for it
_ONNX_TO_TRITON = {
    onnx.TensorProto.STRING: "TYPE_STRING",
    onnx.TensorProto.DOUBLE: "TYPE_FP64",
    onnx.TensorProto.FLOAT: "TYPE_FP32",
}


def _parse(text: str) -> mc.ModelConfig:
    # strict: an unknown field, a misspelt enum or a syntax error raises ParseError
    return text_format.Parse(text, mc.ModelConfig())


def _onnx_shape(value: onnx.ValueInfoProto) -> list[int]:
    return [
        d.dim_value if d.HasField("dim_value") else -1
        for d in value.type.tensor_type.shape.dim
    ]


def _check_against_model(config: mc.ModelConfig, model: onnx.ModelProto) -> None:
    """Triton's rule with ``max_batch_size > 0``: the model tensor is ``[-1] + shape`` where shape is
    ``reshape.shape`` when a reshape is given, else ``dims``; names and types must match exactly."""
    assert config.max_batch_size > 0
    for declared, graph in (
        (config.input, model.graph.input),
        (config.output, model.graph.output),
    ):
        by_name = {v.name: v for v in graph}
        assert sorted(t.name for t in declared) == sorted(by_name)
        for t in declared:
            v = by_name[t.name]
            assert (
                mc.DataType.Name(t.data_type)
                == _ONNX_TO_TRITON[v.type.tensor_type.elem_type]
            ), t.name
            inner = list(t.reshape.shape) if t.HasField("reshape") else list(t.dims)
            assert _onnx_shape(v) == [-1, *inner], t.name


@pytest.mark.slow
def test_exported_repository_loads_under_tritons_schema(export_dir: Path) -> None:  # noqa: F811
    [folder] = (export_dir / "triton").iterdir()
    config = _parse((folder / "config.pbtxt").read_text())
    assert (
        config.name == folder.name
    )  # Triton requires the folder name to equal the model name
    assert config.backend == "onnxruntime"
    assert (folder / "1" / "model.onnx").read_bytes() == (
        export_dir / "model.onnx"
    ).read_bytes()
    assert config.dynamic_batching.max_queue_delay_microseconds > 0
    assert [g.kind for g in config.instance_group] == [mc.ModelInstanceGroup.KIND_CPU]
    _check_against_model(config, onnx.load(str(folder / "1" / "model.onnx")))
    tags = next(t for t in config.input if t.name == "tags")
    assert list(tags.dims) == [-1] and not tags.HasField("reshape")  # any list width


def test_multiclass_output_declares_its_class_axis(tmp_path: Path) -> None:
    inputs = [
        InputSpec("city", "city", "categorical"),
        InputSpec("age", "age", "numeric"),
    ]
    outputs: list[dict[str, object]] = [
        {"name": "grade", "shape": ["batch", 5]},
        {"name": "click", "shape": ["batch"]},
    ]
    config = _parse(
        config_pbtxt("m", inputs, outputs, max_batch_size=64, max_queue_delay_us=100)
    )
    by_name = {t.name: t for t in config.output}
    assert list(by_name["grade"].dims) == [5] and not by_name["grade"].HasField(
        "reshape"
    )
    assert (
        list(by_name["click"].dims) == [1]
        and list(by_name["click"].reshape.shape) == []
    )
    assert config.max_batch_size == 64


def test_model_name_is_sanitised_to_a_folder_triton_accepts(
    tmp_path: Path,
    export_dir: Path,  # noqa: F811
) -> None:
    inputs = [InputSpec("x", "x", "numeric")]
    folder = write_repository(
        tmp_path,
        "census mmoe/v1",
        export_dir / "model.onnx",
        inputs,
        [{"name": "y", "shape": ["batch"]}],
    )
    assert folder.name == "census_mmoe_v1"
    assert _parse((folder / "config.pbtxt").read_text()).name == "census_mmoe_v1"
