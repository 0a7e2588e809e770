"""The balancing interface: registry, typed configs, the collapse warning."""

from __future__ import annotations

import warnings

import pytest
import torch

from recsys_mtl.balancing import BALANCERS, build_balancer
from recsys_mtl.balancing.base import StepContext
from recsys_mtl.errors import SpecError

from tests.support.balancer_table import SHORT_FIT


def test_every_registered_method_has_a_table_row() -> None:
    assert sorted(BALANCERS.names()) == sorted(SHORT_FIT), "add the method to tests/support/balancer_table.py"


def test_bad_params_name_the_field() -> None:
    with pytest.raises(SpecError, match=r"balancing.params.alpha"):
        build_balancer("gradnorm", {"alpha": -1}, ["a", "b"])
    with pytest.raises(SpecError, match=r"balancing.params.bogus: unknown parameter"):
        build_balancer("pcgrad", {"bogus": 1}, ["a", "b"])


def test_collapsed_weight_warns_once_after_the_window() -> None:
    balancer = build_balancer("static", {"weights": {"a": 1.0, "b": 0.001}, "collapse_window": 5}, ["a", "b"])
    ctx = StepContext(step=0, epoch=0)
    losses = torch.ones(2)
    for _ in range(4):
        balancer(losses, ctx)
    with pytest.warns(RuntimeWarning, match="task 'b' weight has stayed below"):
        balancer(losses, ctx)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        balancer(losses, ctx)  # not repeated


def test_healthy_weights_do_not_warn() -> None:
    balancer = build_balancer("static", {"weights": {"a": 1.0, "b": 0.05}, "collapse_window": 2}, ["a", "b"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        for _ in range(5):
            balancer(torch.ones(2), StepContext(step=0, epoch=0))


@pytest.mark.parametrize("window", [1, 3])
def test_constant_weights_warn_at_the_step_counting_every_step_would(window: int) -> None:
    # equal / static count on the host; the device count every other strategy keeps must agree
    steps: dict[bool, list[int]] = {}
    for constant in (True, False):
        balancer = build_balancer("static", {"weights": {"a": 1.0, "b": 0.001, "c": 1.0}, "collapse_window": window}, ["a", "b", "c"])
        assert balancer.constant_weights
        balancer.constant_weights = constant  # type: ignore[misc]
        steps[constant] = []
        for step in range(window + 3):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                balancer(torch.ones(3), StepContext(step=step, epoch=0))
            steps[constant] += [step] * sum("task 'b'" in str(w.message) and f"for {window} steps" in str(w.message) for w in caught)
    assert steps[True] == steps[False] == [window - 1]
