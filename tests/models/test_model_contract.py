"""The contract every registered model keeps, checked on every row of tests/support/model_table.py:
outputs, gradient flow, gates as distributions, batch independence, and a short fit that beats
the constant predictor. Behaviour specific to one model lives in that model's test file."""

from __future__ import annotations

import pytest
import torch

from recsys_mtl.models import MODELS, build_model
from tests.support.model_checks import (
    assert_batch_independent,
    assert_fit_beats_constant,
    assert_gates_are_distributions,
    assert_gradients_reach_everything,
    assert_output_contract,
    learnable_data,
)
from tests.support.model_table import TABLE, Variant, cases, context

CASES = cases()


def test_every_registered_model_has_a_table_row() -> None:
    missing = sorted(set(MODELS.names()) - set(TABLE))
    assert not missing, f"models without contract checks: {missing}; add a line per model to TABLE in tests/support/model_table.py"
    unknown = sorted(set(TABLE) - set(MODELS.names()))
    assert not unknown, f"tests/support/model_table.py lists models that are not registered: {unknown}"
    assert all(TABLE[name] for name in TABLE), "every TABLE row needs at least one Variant"


@pytest.mark.parametrize("name, variant", CASES)
def test_outputs(name: str, variant: Variant) -> None:
    torch.manual_seed(0)
    for num_tasks in sorted({max(variant.min_tasks, 1), 3}):
        ctx, table = context(num_tasks, 64, variant.funnel)
        assert_output_contract(build_model(name, variant.params, ctx), table)


@pytest.mark.parametrize("name, variant", CASES)
def test_gradients_reach_every_parameter(name: str, variant: Variant) -> None:
    torch.manual_seed(0)
    ctx, table = context(3, 128, variant.funnel)
    model = build_model(name, variant.params, ctx)
    if variant.before_gradients is not None:
        variant.before_gradients(model)
    assert_gradients_reach_everything(model, table)


@pytest.mark.parametrize("name, variant", CASES)
def test_gates_are_distributions(name: str, variant: Variant) -> None:
    ctx, table = context(3, 64, variant.funnel)
    count = assert_gates_are_distributions(build_model(name, variant.params, ctx), table)
    assert (count > 0) == variant.gated, f"{name}: {count} gates, table says gated={variant.gated}"


@pytest.mark.parametrize("name, variant", CASES)
def test_batch_independent_in_eval(name: str, variant: Variant) -> None:
    torch.manual_seed(0)
    ctx, table = context(2, 200, variant.funnel)
    assert_batch_independent(build_model(name, variant.params, ctx), table)


@pytest.mark.slow
@pytest.mark.parametrize("name, variant", CASES)
def test_short_fit_beats_constant(name: str, variant: Variant) -> None:
    ctx, train, test = learnable_data(2, funnel=variant.funnel)
    torch.manual_seed(0)
    assert_fit_beats_constant(build_model(name, variant.params, ctx), train, test, steps=variant.fit_steps)
