"""Run a Python snippet or module with torch and recsys_mtl made unimportable (serving tests).

``python tests/serving_blocker.py -m serving ...`` or ``python tests/serving_blocker.py -c CODE``.
"""

from __future__ import annotations

import importlib.abc
import runpy
import sys

BLOCKED = ("torch", "recsys_mtl", "lightning", "torchmetrics")


class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):  # type: ignore[no-untyped-def]
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked: serving must not import it")
        return None


if __name__ == "__main__":
    sys.meta_path.insert(0, Blocker())
    sys.path[0] = sys.path[0].rsplit("/tests", 1)[0]  # the repository root, not tests/
    mode, arg, *rest = sys.argv[1:]
    sys.argv = [arg, *rest]
    if mode == "-m":
        runpy.run_module(arg, run_name="__main__", alter_sys=True)
    else:
        exec(compile(arg, "<snippet>", "exec"), {"__name__": "__main__"})
