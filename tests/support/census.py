"""A census-income folder holding the first rows of the real files (same names, same compression).

For tests whose assertions do not depend on the data size (a fit that must separate both tasks
well above chance): the full files take ~4 CPU s to decompress and 200k rows to fit on. The .bz2
training prefix copies the compressed blocks (:mod:`tests.support.bz2_blocks`) instead of
compressing the rows again (~3 CPU s for 50k rows).
"""

from __future__ import annotations

import gzip
from itertools import islice
from pathlib import Path

from recsys_mtl.data.census import TEST_FILE, TRAIN_FILE
from tests.support.bz2_blocks import head_lines


def census_prefix(source: Path, folder: Path, train_rows: int, test_rows: int) -> Path:
    """``folder`` with the first ``train_rows`` lines of the training file and the first
    ``test_rows`` of the test file (which the reader shuffles and halves into valid / test)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / TRAIN_FILE).write_bytes(head_lines((source / TRAIN_FILE).read_bytes(), train_rows))
    with gzip.open(source / TEST_FILE, "rb") as src:  # only the prefix is decompressed
        head = b"".join(islice(src, test_rows))
    with gzip.open(folder / TEST_FILE, "wb", compresslevel=1) as dst:
        dst.write(head)
    return folder
