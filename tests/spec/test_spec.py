"""Spec and pipeline validation: every bad case names the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from recsys_mtl.errors import LeakageError, SpecError
from recsys_mtl.spec import load_pipeline, load_spec

ROOT = Path(__file__).resolve().parents[2]

GOOD = {
    "name": "t",
    "features": [
        {"name": "a", "kind": "numeric"},
        {"name": "b", "kind": "categorical", "embedding_dim": 4},
        {"name": "tags", "kind": "sequence", "max_len": 3},
    ],
    "tasks": [{"name": "click", "label": "clicked"}, {"name": "buy", "label": "bought = 1", "mask": "clicked = 1"}],
}


def write(tmp_path: Path, raw: object, name: str = "spec.yaml") -> Path:
    p = tmp_path / name
    p.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw))
    return p


def mutate(**changes: object) -> dict:
    import copy

    raw = copy.deepcopy(GOOD)
    raw.update(changes)
    return raw


def test_good_spec_loads(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, GOOD))
    assert [f.name for f in spec.features] == ["a", "b", "tags"]
    assert spec.tasks[0].loss_name == "bce" and spec.tasks[0].metric_names == ("auc", "logloss")
    assert spec.required_columns() == ["a", "b", "tags", "clicked", "bought"]


def test_separator_is_kept_and_a_spec_without_one_dumps_as_before(tmp_path: Path) -> None:
    raw = mutate(features=[{"name": "tags", "kind": "sequence", "max_len": 3, "separator": "|"}])
    assert load_spec(write(tmp_path, raw)).features[0].separator == "|"  # type: ignore[union-attr]
    # unset, the key is left out of every dump, so the spec hash of fitted runs does not change
    dumped = load_spec(write(tmp_path, GOOD)).model_dump(mode="json")
    assert "separator" not in dumped["features"][2] and dumped["features"][2]["max_len"] == 3


def test_shipped_specs_load() -> None:
    for p in (ROOT / "feature_specs").glob("*.yaml"):
        load_spec(p)


@pytest.mark.parametrize(
    "raw, fragments",
    [
        (mutate(colour="red"), ["colour", "unknown key"]),
        (mutate(features=[{"name": "a", "kind": "numeric", "bogus": 1}]), ["features[0] (a).bogus", "unknown key"]),
        (mutate(features=[{"name": "b", "kind": "categorical", "embedding_dim": "big"}]), ["features[0] (b).embedding_dim", "integer"]),
        (mutate(features=[{"name": "b", "kind": "text"}]), ["features[0]", "kind"]),
        (mutate(features=[{"name": "a", "kind": "numeric"}, {"name": "a", "kind": "categorical"}]), ["duplicate feature name 'a'"]),
        (mutate(tasks=[{"name": "x", "label": "l1"}, {"name": "x", "label": "l2"}]), ["duplicate task name 'x'"]),
        (mutate(tasks=[{"name": "x", "label": "l", "type": "binary", "loss": "mse"}]), ["tasks[0] (x)", "loss 'mse'"]),
        (mutate(tasks=[{"name": "x", "label": "l", "type": "multiclass"}]), ["num_classes"]),
        (mutate(tasks=[]), ["tasks", "at least 1"]),
        (
            mutate(features=[{"name": "a", "kind": "categorical", "shared_table": "t", "embedding_dim": 4},
                             {"name": "b", "kind": "categorical", "shared_table": "t", "embedding_dim": 8}]),
            ["shared_table 't'"],
        ),
        (mutate(features=[{"name": "a", "kind": "numeric", "clip": {"min": 3, "max": 1}}]), ["clip min 3.0 > max 1.0"]),
        (mutate(features=[{"name": "a", "kind": "categorical", "vocab": {}, "hash": {"buckets": 8}}]), ["either 'vocab' or 'hash'"]),
        (mutate(features=[{"name": "t", "kind": "sequence", "max_len": 3, "separator": ""}]), ["features[0] (t).separator"]),
        (mutate(features=[{"name": "b", "kind": "categorical", "separator": "|"}]), ["features[0] (b).separator", "unknown key"]),
    ],
)
def test_bad_spec_names_file_and_field(tmp_path: Path, raw: dict, fragments: list[str]) -> None:
    path = write(tmp_path, raw)
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    msg = str(exc.value)
    assert str(path) in msg
    for frag in fragments:
        assert frag in msg


def test_label_as_feature_is_leakage(tmp_path: Path) -> None:
    raw = mutate(features=[{"name": "clicked", "kind": "numeric"}])
    with pytest.raises(LeakageError, match=r"tasks\[0\] \(click\): label column 'clicked' is also the feature 'clicked'"):
        load_spec(write(tmp_path, raw))


def test_label_inside_expression_is_leakage(tmp_path: Path) -> None:
    raw = mutate(features=[{"name": "bought", "kind": "categorical"}])
    with pytest.raises(LeakageError, match="'bought'"):
        load_spec(write(tmp_path, raw))


def test_feature_renamed_from_label_column_is_leakage(tmp_path: Path) -> None:
    raw = mutate(features=[{"name": "innocent", "column": "clicked", "kind": "numeric"}])
    with pytest.raises(LeakageError, match="'innocent'"):
        load_spec(write(tmp_path, raw))


def test_derived_column_is_leakage(tmp_path: Path) -> None:
    raw = mutate(
        features=[{"name": "order_value", "kind": "numeric"}],
        tasks=[{"name": "buy", "label": "bought", "derived_columns": ["order_value"]}],
    )
    with pytest.raises(LeakageError, match="column derived from the label 'order_value'"):
        load_spec(write(tmp_path, raw))


def test_bad_label_expression(tmp_path: Path) -> None:
    raw = mutate(tasks=[{"name": "x", "label": "a = = b"}])
    with pytest.raises(SpecError, match=r"tasks\[0\] \(x\)\.label: cannot parse"):
        load_spec(write(tmp_path, raw))


@pytest.mark.parametrize(
    "text, fragment",
    [("", "file is empty"), ("name: [unclosed", "malformed YAML"), ("- a\n- b\n", "mapping at the top level")],
)
def test_malformed_files(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(SpecError, match=fragment):
        load_spec(write(tmp_path, text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="nope.yaml: file not found"):
        load_spec(tmp_path / "nope.yaml")


def test_pipeline_paths_resolve_and_overrides(tmp_path: Path) -> None:
    cfg, spec = load_pipeline(ROOT / "pipelines" / "census_mmoe.yaml", ["trainer.max_epochs=2", "model.params.num_experts=3"])
    assert cfg.trainer.max_epochs == 2 and cfg.model.params["num_experts"] == 3
    assert cfg.spec.is_absolute() and cfg.spec.exists()
    assert cfg.data.path.is_absolute()  # type: ignore[union-attr]
    assert spec.name == "census_income"


def test_pipeline_monitor_must_be_validation(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="trainer.monitor.*validation metric"):
        load_pipeline(ROOT / "pipelines" / "census_mmoe.yaml", ["trainer.monitor=test/auc_mean"])


def test_pipeline_unknown_key(tmp_path: Path) -> None:
    path = ROOT / "pipelines" / "census_mmoe.yaml"
    with pytest.raises(SpecError, match=r"census_mmoe.yaml: trainer.epochs: unknown key"):
        load_pipeline(path, ["trainer.epochs=3"])


def test_census_spec_leaves_out_labels_and_weights() -> None:
    spec = load_spec(ROOT / "feature_specs" / "census_income.yaml")
    sources = {f.source for f in spec.features}
    assert not sources & {"income_50k", "marital_stat", "education", "instance_weight"}
    assert len(spec.features) == 38
