"""tests/support/bz2_blocks.py: the first lines of a .bz2 file, its compressed blocks copied as they are."""

from __future__ import annotations

import bz2
import random

import pytest

from tests.support.bz2_blocks import head_lines, split_blocks


def _text(lines: int, seed: int) -> bytes:
    rng = random.Random(seed)
    return b"".join(b"%d, %s, %.5f\n" % (i, rng.choice([b"a", b"bb", b"Not in universe"]), rng.random()) for i in range(lines))


@pytest.fixture(scope="module")
def text() -> bytes:
    return _text(20_000, seed=0)  # ~600 kB: several 100 kB blocks at level 1


@pytest.mark.parametrize("lines", [0, 1, 2_999, 3_000, 12_345, 20_000, 25_000])
def test_head_lines_is_the_first_lines(text: bytes, lines: int) -> None:
    data = bz2.compress(text, 1)
    assert len(split_blocks(data)[1]) >= 5  # the prefix crosses block boundaries
    head = head_lines(data, lines)
    assert bz2.decompress(head) == b"".join(text.splitlines(keepends=True)[:lines])


def test_concatenated_streams_and_whole_blocks_copied_unchanged(text: bytes) -> None:
    other = _text(5_000, seed=1)
    data = bz2.compress(text, 1) + bz2.compress(other, 1)  # a multi-stream file (as pbzip2 writes)
    lines = text.count(b"\n") + 100
    assert bz2.decompress(head_lines(data, lines)) == text + b"".join(other.splitlines(keepends=True)[:100])
    # the whole first stream's blocks, copied: the same compressed bits as in the input
    _, blocks = split_blocks(data)
    _, copied = split_blocks(head_lines(data, text.count(b"\n")))
    assert copied == blocks[:len(copied)] and len(copied) == len(split_blocks(bz2.compress(text, 1))[1])


def test_not_bzip2_is_refused() -> None:
    with pytest.raises(ValueError, match="not a bzip2 file"):
        split_blocks(b"PK\x03\x04")
