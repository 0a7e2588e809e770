"""Input limits that must not get in the way of valid input: YAML features users rely on, the
shipped pipelines, trainer devices on a GPU machine, and ±inf refused in every fitting path."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest
import torch

from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.data.synthetic import SyntheticConfig, generate
from recsys_mtl.errors import DataError, SpecError
from recsys_mtl.spec import FeatureSpec, load_pipeline
from recsys_mtl.spec.pipeline import TrainerConfig
from recsys_mtl.spec.yaml_io import MAX_NODES, load_yaml_text, read_yaml_file
from recsys_mtl.train import pipeline_checks

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------- YAML
def test_anchors_merge_keys_and_bom_still_load(tmp_path: Path) -> None:
    text = "base: &b {lr: 0.1, epochs: 3}\nrun:\n  <<: *b\n  epochs: 5\nlist: [*b, *b]\n"
    assert load_yaml_text(text, "x") == {
        "base": {"lr": 0.1, "epochs": 3}, "run": {"lr": 0.1, "epochs": 5}, "list": [{"lr": 0.1, "epochs": 3}] * 2,
    }
    path = tmp_path / "bom.yaml"
    path.write_bytes("\ufeffname: café\n".encode("utf-8"))
    assert read_yaml_file(path) == {"name": "café"}


def test_duplicate_key_in_nested_mapping_names_its_line() -> None:
    with pytest.raises(SpecError, match=r"x \(line 4\): key 'b' given twice \(first on line 3\)"):
        load_yaml_text("a: 1\nnested:\n  b: 1\n  b: 2\n", "x")


def test_alias_expansion_is_counted_not_materialised() -> None:
    # just under the limit loads; one more level of aliases is refused before any object is built
    width = 10
    levels = [f"l0: &l0 [{', '.join(['x'] * width)}]"]
    levels += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, 5)]
    assert width ** 5 < MAX_NODES < width ** 6
    assert len(load_yaml_text("\n".join(levels), "x")["l4"]) == width
    with pytest.raises(SpecError, match="alias bomb"):
        load_yaml_text("\n".join(levels + [f"l5: [{', '.join(['*l4'] * width)}]"]), "x")


@pytest.mark.parametrize("path", sorted((ROOT / "pipelines").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_pipelines_pass_every_check(path: Path) -> None:
    cfg, spec = load_pipeline(path)
    pipeline_checks.check_pipeline(cfg, spec)


# ---------------------------------------------------------------------- trainer devices
@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


@pytest.mark.parametrize(("devices", "accelerator", "error"), [
    (2, "gpu", None),
    ("0,1", "cuda", None),
    (-1, "auto", None),
    (3, "gpu", "3 requested but this machine has 2 CUDA GPUs"),
    (4, "auto", "4 requested but this machine has 2 CUDA GPUs"),
    ("0,2", "gpu", "GPU id 2 requested"),
])
def test_devices_bounded_by_the_gpus_present(two_gpus: None, devices: int | str, accelerator: str, error: str | None) -> None:
    t = TrainerConfig(devices=devices, accelerator=accelerator)
    if error is None:
        pipeline_checks.check_devices(t)
    else:
        with pytest.raises(SpecError, match=f"trainer.devices: {error}"):
            pipeline_checks.check_devices(t)


def test_devices_bounded_by_cpu_cores() -> None:
    cores = pipeline_checks.machine_devices("cpu")
    assert cores is not None and cores[1] >= 1
    pipeline_checks.check_devices(TrainerConfig(accelerator="cpu", devices=cores[1]))
    with pytest.raises(SpecError, match=f"{cores[1] + 1} requested but this machine has {cores[1]} CPU core"):
        pipeline_checks.check_devices(TrainerConfig(accelerator="cpu", devices=cores[1] + 1))


def test_allowed_values_come_from_lightning() -> None:
    assert {"32-true", "16-mixed", "bf16-mixed"} <= set(pipeline_checks.PRECISIONS)
    assert {"auto", "cpu", "gpu", "cuda"} <= set(pipeline_checks.ACCELERATORS)
    assert {"auto", "ddp", "fsdp"} <= set(pipeline_checks.STRATEGIES)


def test_checks_leave_the_random_stream_alone(spec2: FeatureSpec) -> None:
    cfg, _ = load_pipeline(ROOT / "pipelines" / "synthetic_mmoe.yaml")
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    pipeline_checks.check_pipeline(cfg, spec2)
    assert torch.equal(torch.rand(3), expected)


# ---------------------------------------------------------------------- ±inf
def _with_inf(df: pl.DataFrame, col: str, row: int, value: float = math.inf) -> pl.DataFrame:
    return df.with_columns(pl.when(pl.int_range(pl.len()) == row).then(value).otherwise(pl.col(col)).alias(col))


def test_inf_is_refused_at_fit_and_transform(spec2: FeatureSpec) -> None:
    df = generate(SyntheticConfig(rows=300, num_tasks=2, seed=4))
    with pytest.raises(DataError, match=r"train: column 'num3' .* 1 infinite value\(s\), first at row 17"):
        Preprocessor.fit(spec2, _with_inf(df, "num3", 17), where="train")
    pre = Preprocessor.fit(spec2, df)  # NaN and null stay missing values
    assert all(math.isfinite(n.mean) and math.isfinite(n.std) for n in pre.numeric.values())
    with pytest.raises(DataError, match=r"scoring rows: column 'num0' .* first at row 3"):
        pre.transform(_with_inf(df, "num0", 3, -math.inf), "scoring rows")


def test_inf_is_refused_by_the_streaming_fit_past_the_sample(spec2: FeatureSpec, tmp_path: Path) -> None:
    df = generate(SyntheticConfig(rows=300, num_tasks=2, seed=4))
    pl.concat([df] * 35).write_parquet(tmp_path / "a.parquet")  # 10 500 clean rows: the sampled head
    _with_inf(df.head(50), "num1", 20).write_parquet(tmp_path / "b.parquet")
    Preprocessor.fit_files(spec2, [tmp_path / "a.parquet"])
    with pytest.raises(DataError, match=r"column 'num1' .* 1 infinite value"):
        Preprocessor.fit_files(spec2, [tmp_path / "a.parquet", tmp_path / "b.parquet"])
