"""Reinforcement-learning training modes a pipeline selects with ``rl: {name, params}``.

Each mode is a :class:`~recsys_mtl.train.module.MultiTaskModule` subclass with a pydantic
``Config``, built from the model, the balancer and the in-memory training table (its sessions).
Modes register on import of their module; :func:`build_rl_module` imports the known ones.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Sequence

from recsys_mtl.balancing.base import Balancer
from recsys_mtl.data.tensors import EncodedTable
from recsys_mtl.errors import SpecError
from recsys_mtl.models.base import MultiTaskModel
from recsys_mtl.registry import Registry
from recsys_mtl.spec.features import Task
from recsys_mtl.spec.pipeline import TrainerConfig

RL_MODES: Registry[Any] = Registry("training mode", "rl")
#: modules that register modes (imported lazily: they import train.module, which imports nothing of this)
_MODULES = ("recsys_mtl.train.rmtl_module",)


def register_rl(name: str) -> Callable[[type], type]:
    return RL_MODES.register(name)


def load_modes() -> None:
    """Import the modules that register training modes."""
    for module in _MODULES:
        importlib.import_module(module)


def check_rl(name: str, params: dict[str, Any], tasks: Sequence[Task]) -> None:
    """SpecError naming ``rl.…`` on an unknown mode, bad params, or params the spec cannot meet."""
    load_modes()
    RL_MODES.get(name).check(RL_MODES.config(name, params), tasks)


def build_rl_module(name: str, params: dict[str, Any], model: MultiTaskModel, tasks: Sequence[Task], balancer: Balancer,
                    trainer_cfg: TrainerConfig, train: object) -> Any:
    """The mode's LightningModule; SpecError naming ``rl.…`` on bad params or unsupported data."""
    load_modes()
    config = RL_MODES.config(name, params)
    if not isinstance(train, EncodedTable):
        raise SpecError(f"rl.name: {name!r} needs in-memory training data (files, synthetic, census), "
                        f"not a streamed training set ({type(train).__name__})")
    return RL_MODES.get(name)(model, tasks, balancer, trainer_cfg, config, train)
