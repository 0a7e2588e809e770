"""A module dict keyed by names users choose (features, tables, tasks).

``nn.ModuleDict`` refuses a key that is already an attribute of the dict (``type``, ``items``,
``float``, ``training``, ...), which are ordinary column and task names. :class:`NamedModuleDict`
stores such a name under ``<name>__user`` (and, so that no two names meet, also every name that
already ends in ``__user``); every other name is stored as itself, so the parameter paths of
checkpoints written before it are unchanged. Indexing and ``in`` take the user's name.
"""

from __future__ import annotations

from torch import nn

SUFFIX = "__user"
_RESERVED = frozenset(dir(nn.ModuleDict()))


def module_key(name: str) -> str:
    """The key ``name`` is stored under: itself, or ``name + "__user"`` when it would clash."""
    return name + SUFFIX if name in _RESERVED or name.endswith(SUFFIX) else name


class NamedModuleDict(nn.ModuleDict):
    """``nn.ModuleDict`` whose keys may be any identifier; ``keys()`` / ``items()`` give stored keys
    (the parameter paths), indexing and ``in`` the user's names."""

    def __getitem__(self, name: str) -> nn.Module:
        return super().__getitem__(module_key(name))

    def __setitem__(self, name: str, module: nn.Module) -> None:
        super().__setitem__(module_key(name), module)

    def __delitem__(self, name: str) -> None:
        super().__delitem__(module_key(name))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(module_key(name))
