"""Registries: discovery by package scan, one description per parameter, generated docs agree."""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from recsys_mtl.balancing import BALANCERS
from recsys_mtl.models import MODELS
from recsys_mtl.parameter_docs import nested, parameters_markdown, roots, undocumented
from recsys_mtl.registry import Registry, discover
from recsys_mtl.strict import ParamsModel, nested_params, param_infos

ROOT = Path(__file__).resolve().parents[2]
REGISTRIES = [MODELS, BALANCERS]


def test_every_parameter_has_its_docstring() -> None:
    # models, balancers, rl modes, feature kinds, the spec, every pipeline section, and the groups nested in them
    assert not undocumented(), "document each field with a docstring right under it"


@pytest.mark.parametrize("registry", REGISTRIES, ids=lambda r: r.kind)
def test_every_component_is_listed_with_a_summary(registry: Registry) -> None:  # type: ignore[type-arg]
    for name in registry.names():
        assert registry.summary(name), f"{name}: no docstring summary"
        assert registry.get(name).Config in roots()  # type: ignore[attr-defined]


def test_parameters_are_documented_one_way() -> None:
    """No markdown parameter table in a docstring and no ``#:`` comment on a field: the field's
    docstring is the only place (recsys_mtl.strict)."""
    components = [reg.get(n) for reg in REGISTRIES for n in reg.names()]
    for cls in [*components, *roots(), *nested()]:
        assert "| param |" not in (cls.__doc__ or ""), f"{cls.__qualname__}: a parameter table in a docstring"
    for cls in [*roots(), *nested()]:
        source = inspect.getsource(cls)
        assert not re.search(r"^\s+#:", source, re.M), f"{cls.__qualname__}: a #: comment where a field docstring belongs"


class Documented(ParamsModel):
    size: int = 3
    """how many"""
    depth: int = 1
    inner: "Inner | None" = None
    """a nested group"""


class Inner(ParamsModel):
    width: list[int] = []


Documented.model_rebuild()


def test_a_field_without_a_docstring_has_no_description() -> None:
    infos = {p.name: p for p in param_infos(Documented)}
    assert infos["size"].description == "how many" and infos["size"].default == "3"
    assert infos["depth"].description == ""  # what undocumented() reports
    assert nested_params(Documented) == [Inner]
    assert [p.description for p in param_infos(Inner)] == [""]


@pytest.mark.slow
def test_parameter_docs_are_generated_from_the_docstrings() -> None:
    expected = parameters_markdown()
    assert (ROOT / "docs" / "parameters.md").read_text() == expected, (
        "docs/parameters.md is stale: regenerate with `recsys-mtl list --params > docs/parameters.md`"
    )
    assert "| max_epochs | `int` | `10` |" in expected and "### `features[]` of kind `categorical`" in expected


def test_discover_imports_every_module_of_a_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "plugins_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name in ("alpha", "beta"):
        (pkg / f"{name}.py").write_text(
            "from tests.registry.test_registry import LOCAL, Thing\n"
            f"@LOCAL.register({name!r})\n"
            f"class {name.title()}(Thing):\n    '''The {name} thing.'''\n"
        )
    (pkg / "_private.py").write_text("raise RuntimeError('private modules are not imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    discover("plugins_pkg")
    assert LOCAL.names() == ["alpha", "beta"]
    assert LOCAL.summary("beta") == "The beta thing"
    sys.modules.pop("plugins_pkg", None)


class Thing:
    class Config(BaseModel):
        size: int = 3


LOCAL: Registry[Thing] = Registry("thing", "thing")
