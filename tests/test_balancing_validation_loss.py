"""Validation losses are exact masked means over the whole split, not means of batch means."""

from __future__ import annotations

import torch

from recsys_mtl.balancing import build_balancer
from recsys_mtl.data.preprocess import Preprocessor
from recsys_mtl.data.synthetic import SyntheticConfig, generate
from recsys_mtl.models import ModelContext, build_model
from recsys_mtl.spec.pipeline import TrainerConfig
from recsys_mtl.train.module import MultiTaskModule
from tests.conftest import synthetic_spec


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
