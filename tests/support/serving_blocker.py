"""Run a Python snippet or module with torch and recsys_mtl made unimportable (serving tests).

``python tests/support/serving_blocker.py -m serving ...`` or ``python tests/support/serving_blocker.py -c CODE``.
"""

from __future__ import annotations

import importlib.abc
import runpy
import sys
from pathlib import Path

BLOCKED = ("torch", "recsys_mtl", "lightning", "torchmetrics")


class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):  # type: ignore[no-untyped-def]
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked: serving must not import it")
        return None


if __name__ == "__main__":
    sys.meta_path.insert(0, Blocker())
    sys.path[0] = str(Path(__file__).resolve().parents[2])  # the repository root, not tests/support/
    mode, arg, *rest = sys.argv[1:]
    sys.argv = [arg, *rest]
    if mode == "-m":
        runpy.run_module(arg, run_name="__main__", alter_sys=True)
    else:
        exec(compile(arg, "<snippet>", "exec"), {"__name__": "__main__"})
