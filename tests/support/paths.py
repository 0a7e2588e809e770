"""Where the tests find the repository and the shared data sets."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("RECSYS_MTL_SHARED_DATA", ROOT.parent / "shared" / "data"))
CENSUS_DIR = SHARED_DATA / "census-income-kdd"
