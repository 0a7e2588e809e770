"""A census-income folder holding the first rows of the real files (same names, same compression),
or a few made-up rows in the census format (:func:`tiny_census`, for tests that need no shared data).

For tests whose assertions do not depend on the data size (a fit that must separate both tasks
well above chance): the full files take ~4 CPU s to decompress and 200k rows to fit on. The .bz2
training prefix copies the compressed blocks (:mod:`tests.support.bz2_blocks`) instead of
compressing the rows again (~3 CPU s for 50k rows).
"""

from __future__ import annotations

import bz2
import gzip
import random
from itertools import islice
from pathlib import Path

from recsys_mtl.data.census import CENSUS_COLUMNS, TEST_FILE, TRAIN_FILE
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


def census_lines(rows: int, seed: int) -> bytes:
    """``rows`` made-up lines in the census files' format: 42 ', '-separated fields (some with inner
    spaces, as the real ones), the income label last."""
    rng = random.Random(seed)
    words = ["Not in universe", "Private", "?", "Married-civilian spouse present", "White", "0"]
    lines = []
    for _ in range(rows):
        fields = [str(rng.randint(0, 90)), *(rng.choice(words) for _ in CENSUS_COLUMNS[1:-1]), rng.choice(["- 50000.", "50000+."])]
        lines.append(", ".join(fields) + "\n")
    return "".join(lines).encode()


def tiny_census(folder: Path, train_rows: int = 40, test_rows: int = 20, seed: int = 0) -> Path:
    """``folder`` with made-up census rows under the real files' names and compressions (.bz2, .gz)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / TRAIN_FILE).write_bytes(bz2.compress(census_lines(train_rows, seed), 1))
    (folder / TEST_FILE).write_bytes(gzip.compress(census_lines(test_rows, seed + 1), 1))
    return folder
