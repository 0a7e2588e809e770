"""``python -m recsys_mtl ...``: the same entry point as the ``recsys-mtl`` console script."""

from recsys_mtl.cli import main

raise SystemExit(main())
