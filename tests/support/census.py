"""A census-income folder holding the first rows of the real files (same names, same compression).

For tests whose assertions do not depend on the data size (a fit that must separate both tasks
well above chance): the full files take ~4 CPU s to decompress and 200k rows to fit on.
"""

from __future__ import annotations

import bz2
import gzip
from itertools import islice
from pathlib import Path

from recsys_mtl.data.census import TEST_FILE, TRAIN_FILE


def census_prefix(source: Path, folder: Path, train_rows: int, test_rows: int) -> Path:
    """``folder`` with the first ``train_rows`` lines of the training file and the first
    ``test_rows`` of the test file (which the reader shuffles and halves into valid / test)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows, opener in ((TRAIN_FILE, train_rows, bz2.open), (TEST_FILE, test_rows, gzip.open)):
        with opener(source / name, "rb") as src:  # only the prefix is decompressed
            head = b"".join(islice(src, rows))
        with opener(folder / name, "wb", compresslevel=1) as dst:
            dst.write(head)
    return folder
