"""Registries: discovery by package scan, one description per parameter, generated docs agree."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from recsys_mtl.balancing import BALANCERS
from recsys_mtl.models import MODELS
from recsys_mtl.registry import Registry, components_markdown, discover, table_docs

ROOT = Path(__file__).resolve().parents[2]
REGISTRIES = [MODELS, BALANCERS]


@pytest.mark.parametrize("registry", REGISTRIES, ids=lambda r: r.kind)
def test_every_parameter_has_one_description(registry: Registry) -> None:  # type: ignore[type-arg]
    undocumented = {n: [p.name for p in registry.params(n) if not p.description] for n in registry.names()}
    assert not {n: ps for n, ps in undocumented.items() if ps}, "document them in the Config (#: comment) or the docstring table"
    for name in registry.names():
        cls = registry.get(name)
        stale = set(table_docs(cls)) - set(cls.Config.model_fields)  # type: ignore[attr-defined]
        assert not stale, f"{name}: docstring table rows for parameters that do not exist: {stale}"
        assert registry.summary(name), f"{name}: no docstring summary"


@pytest.mark.slow
def test_parameter_docs_are_generated_from_the_registries() -> None:
    expected = components_markdown(REGISTRIES, params=True)
    assert (ROOT / "docs" / "parameters.md").read_text() == expected, (
        "docs/parameters.md is stale: regenerate with `recsys-mtl list --params > docs/parameters.md`"
    )


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
        #: how many
        size: int = 3


LOCAL: Registry[Thing] = Registry("thing", "thing")
