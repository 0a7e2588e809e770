"""Every registered model with the parameter variants its contract is checked on.

The contract test (tests/models/test_model_contract.py) and the ONNX export test (tests/export/test_model_graph.py)
run every row; a model registered without a row fails the contract test. Params are kept small so
each check runs in well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable

import pytest

from recsys_mtl.data.tensors import EncodedTable
from recsys_mtl.models import ModelContext, MultiTaskModel
from tests.support.synthetic import make_context


def _dtrn_unblock(model: MultiTaskModel) -> None:
    """dtrn's W2 starts at 0 (an identity bottom), which blocks W1's gradient at initialisation."""
    model.bottom.w2.data.normal_()


def _film_unblock(model: MultiTaskModel) -> None:
    """preference's FiLM output layers start at 0 (the base model's behaviour), which blocks the
    gradient of the MLPs in front of them at initialisation."""
    for film in [model.film_shared, *model.film_towers]:
        film.out.weight.data.normal_(std=0.1)


@dataclass(frozen=True)
class Variant:
    """One configuration of a model: its params and what its checks need to know."""

    id: str
    params: dict[str, Any] = field(default_factory=dict)
    funnel: bool = False  # needs tasks declared ``after`` one another
    gated: bool = False  # has softmax gates (recsys_mtl.nn.blocks.Gate)
    min_tasks: int = 1  # the params name tasks (groups) or a funnel needs two stages
    fit_steps: int = 40  # deeper models need more steps of the short fit to beat the base rate
    before_gradients: Callable[[MultiTaskModel], None] | None = None


EXPERT = {"expert_hidden": [16], "tower_hidden": [8]}
PLE = EXPERT | {"num_levels": 2, "task_experts": 2, "shared_experts": 2}
HOME = EXPERT | {"global_experts": 2, "group_experts": 1, "task_experts": 1, "feature_gate_rank": 4}
HOME_GROUPED = HOME | {"groups": {"g": ["task0"]}}  # tasks after task0 are in no group
ADATT = EXPERT | {"variant": "sp", "num_levels": 2, "task_experts": 2}
TOKENS = {"d_token": 16, "n_blocks": 2, "n_heads": 2}

TABLE: dict[str, list[Variant]] = {
    "shared_bottom": [Variant("default")],
    "omoe": [Variant("default", {"num_experts": 4}, gated=True)],
    "mmoe": [
        Variant("default", {"num_experts": 4}, gated=True),
        Variant("mmoeex", EXPERT | {"num_experts": 4, "exclusivity": 0.5}, gated=True),
    ],
    "ple": [
        Variant("levels2", PLE, gated=True, fit_steps=60),
        Variant("levels3_exclusive", PLE | {"num_levels": 3, "task_experts": 1, "shared_experts": 3, "exclusivity": 0.7},
                gated=True, fit_steps=80),
    ],
    "cgc": [Variant("default", PLE | {"num_levels": 1}, gated=True)],
    "home": [
        Variant("hierarchy_mask", HOME_GROUPED | {"num_levels": 2}, gated=True, fit_steps=80),
        Variant("no_hierarchy_mask", HOME_GROUPED | {"num_levels": 1, "hierarchy_mask": False}, gated=True),
    ],
    "adatt": [
        Variant("sp", ADATT, gated=True),
        Variant("general", ADATT | {"variant": "general", "shared_experts": 2}, gated=True),
    ],
    "dtrn": [
        Variant("mmoe", {"inner": {"name": "mmoe", "params": {"num_experts": 3, "expert_hidden": [16]}}}, gated=True,
                before_gradients=_dtrn_unblock),
        # the interest module over the spec's tags sequence (mean pooling; target attention: test_dtrn.py)
        Variant("mmoe_interest", {"inner": {"name": "mmoe", "params": {"num_experts": 3, "expert_hidden": [16]}},
                                  "interest": {"hyper_hidden": [8], "ffn_hidden": 16, "num_heads": 2}},
                gated=True, before_gradients=_dtrn_unblock),
    ],
    "preference": [
        Variant("mmoe", {"base": "mmoe", "base_params": {"num_experts": 4}, "film_hidden": [8]}, gated=True,
                before_gradients=_film_unblock),
    ],
    "ensemble": [Variant("mmoe3", {"base": "mmoe", "base_params": {"num_experts": 3, "expert_hidden": [16]}, "members": 3}, gated=True)],
    "stem": [Variant("default", {"shared_experts": 2, "task_experts": 2, "expert_hidden": [16]}, gated=True)],
    "esmm": [Variant("default", {"tower_hidden": [32]}, funnel=True, min_tasks=2)],
    "aitm": [Variant("default", {"bottom_hidden": [32]}, funnel=True, min_tasks=2)],
    "multitab": [Variant("default", TOKENS | {"ffn_hidden": 32})],
    "ft_transformer": [Variant("default", TOKENS | {"ffn_hidden": 24}, fit_steps=100)],
}


def cases() -> list[Any]:
    """One pytest.param (model name, Variant) per row, with id ``name-variant``."""
    return [pytest.param(name, v, id=f"{name}-{v.id}") for name, variants in TABLE.items() for v in variants]


@lru_cache(maxsize=None)
def context(num_tasks: int, rows: int, funnel: bool = False) -> tuple[ModelContext, EncodedTable]:
    """make_context's data (cached: the checks only read it); ``funnel``: task k declared after task k-1."""
    ctx, table = make_context(num_tasks, rows=rows)
    if funnel:
        tasks = [t.model_copy(update={"after": f"task{k - 1}"}) if k else t for k, t in enumerate(ctx.tasks)]
        ctx = ModelContext(layout=ctx.layout, tasks=tasks)
    return ctx, table
