"""Every parameter a user can set, with its type, default and meaning: ``recsys-mtl list --params``,
which is docs/parameters.md.

The meaning is the field's docstring (the one way a parameter is documented, see
:mod:`recsys_mtl.strict`). Sections: models (``model.params``), balancing methods
(``balancing.params``), training modes (``rl.params``), feature kinds (a spec's ``features[]``) and
the spec's top level, the pipeline's sections (top level, each ``data`` kind, ``trainer``,
``encoder``, ``tune``, ``baselines``), then every nested group of parameters once (e.g.
``CrossConfig``, the type of ``expert_cross``). It sits on the top floor because it reads every
registry and section.
"""

from __future__ import annotations

from typing import Any, get_args

from pydantic import BaseModel

from recsys_mtl.balancing import BALANCERS
from recsys_mtl.baselines.config import BaselinesConfig
from recsys_mtl.features.registry import kinds
from recsys_mtl.models import MODELS
from recsys_mtl.nn.encoder_config import EncoderConfig
from recsys_mtl.registry import Registry, components_markdown, params_table
from recsys_mtl.spec.features import FeatureSpec
from recsys_mtl.spec.pipeline import DataConfig, PipelineConfig, TrainerConfig
from recsys_mtl.strict import nested_params, param_infos
from recsys_mtl.train.rl import RL_MODES, load_modes
from recsys_mtl.tune.space import TuneConfig


def registries() -> list[Registry[Any]]:
    """The registries whose components take ``params``: models, balancing methods, training modes."""
    load_modes()
    return [MODELS, BALANCERS, RL_MODES]


def sections() -> list[tuple[str, type[BaseModel]]]:
    """(heading, class) of every documented section besides the registries' components."""
    out: list[tuple[str, type[BaseModel]]] = [(f"`features[]` of kind `{k.name}`", k.spec) for k in kinds()]
    out.append(("the spec file (top level)", FeatureSpec))
    out.append(("the pipeline file (top level)", PipelineConfig))
    data_kinds = get_args(get_args(DataConfig)[0])
    out += [(f"`data:` of kind `{cls.model_fields['kind'].annotation.__args__[0]}`", cls) for cls in data_kinds]
    out += [("`trainer:`", TrainerConfig), ("`encoder:`", EncoderConfig), ("`tune:`", TuneConfig), ("`baselines:`", BaselinesConfig)]
    return out


def roots() -> list[type[BaseModel]]:
    """Every documented class at the top of a section: the components' ``Config`` and the sections."""
    configs = [reg.get(n).Config for reg in registries() for n in reg.names()]
    return list(dict.fromkeys([*configs, *(cls for _, cls in sections())]))


def nested() -> list[type[BaseModel]]:
    """The groups of parameters reachable from the roots (a field typed ``CrossConfig``), each once."""
    tops = roots()
    return [c for c in dict.fromkeys(n for r in tops for n in nested_params(r)) if c not in tops]


def undocumented() -> list[str]:
    """``Class.field`` of every documented class's field without a docstring."""
    return [f"{cls.__module__}.{cls.__qualname__}.{p.name}" for cls in [*roots(), *nested()]
            for p in param_infos(cls) if not p.description]


def parameters_markdown() -> str:
    """docs/parameters.md."""
    out = [components_markdown(registries(), params=True).rstrip("\n"), "", "## Feature kinds, the spec and the pipeline", ""]
    for heading, cls in sections():
        out += [f"### {heading}", "", *params_table(param_infos(cls))]
    out += ["## Nested parameter groups", "", "The type of a field above names its group.", ""]
    for cls in nested():
        out += [f"### `{cls.__name__}`", "", *params_table(param_infos(cls))]
    return "\n".join(out)
