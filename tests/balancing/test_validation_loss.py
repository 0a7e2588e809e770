"""Validation losses are exact masked means over the whole split, not means of batch means."""

from __future__ import annotations

import torch

from recsys_mtl.balancing import build_balancer
from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.data.synthetic import SyntheticConfig, generate
from recsys_mtl.models import ModelContext, build_model
from recsys_mtl.spec.pipeline import TrainerConfig
from recsys_mtl.train.module import MultiTaskModule
from tests.support.synthetic import synthetic_spec


def test_eval_accumulates_exact_masked_means() -> None:
    spec = synthetic_spec(2)
    df = generate(SyntheticConfig(rows=300, num_tasks=2, seed=0))
    pre = Preprocessor.fit(spec, df)
    table = pre.transform(df).columns()
    table["weights"][:200, 1] = 0.0  # task1 labelled only in the last 100 rows
    torch.manual_seed(0)
    model = build_model("mmoe", {}, ModelContext(pre.layout, spec.tasks))
    module = MultiTaskModule(model, spec.tasks, build_balancer("equal", {}, model.task_names), TrainerConfig())
    module.eval()
    with torch.no_grad():
        whole = module.task_losses(module(table), table)
        batches = [{k: v[a:b] for k, v in table.items()} for a, b in [(0, 250), (250, 300)]]
        for batch in batches:
            module._eval_step(batch, "val")
        exact = module.exact_losses(module._eval_sums, module._eval_weights)
        old_style = sum(module.task_losses(module(b), b) * len(b["labels"]) for b in batches) / 300
    torch.testing.assert_close(exact, whole)
    assert abs(float(old_style[1] - whole[1])) > 1e-3  # the row-weighted mean of batch means is not it


def test_validation_and_training_losses_share_the_standardized_scale() -> None:
    import polars as pl
    import pytest

    from recsys_mtl.balancing import build_balancer
    from recsys_mtl.data.preprocess import Preprocessor
    from recsys_mtl.models import ModelContext, build_model
    from recsys_mtl.spec import FeatureSpec
    from recsys_mtl.spec.pipeline import TrainerConfig
    from recsys_mtl.train.module import MultiTaskModule

    y = [100.0 + 10.0 * v for v in (-1.0, 0.0, 1.0, 2.0)]  # mean 105, std ≈ 11.2
    df = pl.DataFrame({"a": [0.1, 0.2, 0.3, 0.4], "y": y})
    spec = FeatureSpec.model_validate({"name": "r", "features": [{"name": "a", "kind": "numeric"}],
                                       "tasks": [{"name": "t", "label": "y", "type": "regression"}]})
    pre = Preprocessor.fit(spec, df)
    model = build_model("shared_bottom", {}, ModelContext(layout=pre.layout, tasks=spec.tasks))
    module = MultiTaskModule(model, spec.tasks, build_balancer("equal", {}, ["t"]), TrainerConfig())
    batch = pre.transform(df).columns()
    std = pre.layout.targets["t"][1]
    logits = {"t": batch["labels"][:, 0] + std}  # one standard deviation off on every row
    train = module.task_losses(logits, batch)
    sums, weights = module.task_loss_sums(logits, batch)
    assert float(train[0]) == pytest.approx(1.0, rel=1e-5)  # MSE in standardized units
    assert float(sums[0] / weights[0]) == pytest.approx(float(train[0]), rel=1e-6)
