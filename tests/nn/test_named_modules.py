"""Feature, table and task names that are attributes of nn.ModuleDict ('type', 'items', 'float')."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.data.synthetic import SyntheticConfig, generate
from recsys_mtl.models import ModelContext, build_model
from recsys_mtl.nn.named import NamedModuleDict, module_key
from recsys_mtl.spec import FeatureSpec
from recsys_mtl.train.task_metrics import TaskMetrics
from tests.support.synthetic import synthetic_spec
from tests.support.model_checks import feats


def test_reserved_names_are_stored_apart_and_indexed_by_the_users_name() -> None:
    d = NamedModuleDict({"type": nn.Linear(1, 1), "click": nn.Linear(1, 2), "type__user__user": nn.Linear(1, 3)})
    assert "type" in d and "click" in d and "items" not in d
    assert d["type"].out_features == 1 and d["click"].out_features == 2 and d["type__user__user"].out_features == 3
    # ordinary names keep their parameter paths (checkpoints written before stay loadable)
    assert "click.weight" in d.state_dict() and "type__user.weight" in d.state_dict()
    names = ["type", "type__user", "items", "x", "x__user"]
    assert len({module_key(n) for n in names}) == len(names)  # no two names share a key


def test_a_model_and_its_metrics_take_reserved_feature_and_task_names() -> None:
    rename = {"cat0": "type", "tags": "items"}
    df = generate(SyntheticConfig(rows=400, seed=0)).rename(rename)
    raw = synthetic_spec(2).model_dump(mode="json", exclude_defaults=True)
    for f in raw["features"]:
        f["name"] = rename.get(f["name"], f["name"])
    raw["tasks"] = [{"name": "float", "label": "label0", "type": "binary"}, {"name": "training", "label": "label1", "type": "binary"}]
    spec = FeatureSpec.model_validate(raw)
    pre = Preprocessor.fit(spec, df)
    table = pre.transform(df)
    model = build_model("mmoe", {"num_experts": 2, "expert_hidden": [8], "tower_hidden": [4]}, ModelContext(layout=pre.layout, tasks=spec.tasks))
    out = model(feats(table))
    assert set(out) == {"float", "training"} and out["float"].shape == (400,)
    assert model.encoder.embeddings["type"].weight.shape[0] == pre.tables["type"].size
    metrics = TaskMetrics(spec.tasks)
    metrics.update(out, table.labels, table.weights)
    values = metrics.compute()
    assert {"float/auc", "training/auc"} <= set(values) and all(torch.isfinite(torch.tensor(v)) for v in values.values())


@pytest.mark.parametrize("name", ["type", "items"])
def test_plain_module_dict_refuses_these_names(name: str) -> None:
    """Why NamedModuleDict exists: if torch ever accepts these names, it can go."""
    with pytest.raises(KeyError):
        nn.ModuleDict({name: nn.Linear(1, 1)})
