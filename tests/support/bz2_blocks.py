"""The first lines of a .bz2 file as a .bz2 file, without compressing them again.

bzip2 compresses each block (≤ 900 kB of input) on its own, so a block's compressed bits can be
copied into a new stream as they are (what ``bzip2recover`` does): only the block that holds the
last wanted line is decompressed, cut and compressed again. A prefix of 50k census rows costs
~0.6 CPU s this way instead of ~3 s (recompressing 26 MB with bz2, even at level 1).

Format (bzip2 1.0.x): a stream is ``BZh`` + level digit, then blocks, each starting with the 48-bit
magic 0x314159265359 and its 32-bit CRC, then the 48-bit end magic 0x177245385090, the stream CRC
(each block's CRC folded in: ``rotl(crc, 1) ^ block_crc``) and padding to a byte. Blocks are not
byte-aligned. Concatenated streams form a valid file (Python's ``bz2`` reads every stream).
"""

from __future__ import annotations

import bz2

BLOCK_MAGIC, END_MAGIC = 0x314159265359, 0x177245385090


def _magic_bits(data: bytes, big: int, magic: int) -> list[int]:
    """Bit offsets (from the first byte's top bit) where the 48-bit ``magic`` starts in ``data``."""
    nbits = 8 * len(data)
    needle = magic.to_bytes(6, "big")
    found = []
    for shift in range(8):  # the data moved ``shift`` bits up: a magic at bit 8j + shift sits at byte j
        moved = ((big << shift) & ((1 << nbits) - 1)).to_bytes(len(data), "big")
        at = moved.find(needle)
        while at != -1:
            found.append(8 * at + shift)
            at = moved.find(needle, at + 1)
    return sorted(found)


def _bits(big: int, nbits: int, start: int, end: int) -> tuple[int, int]:
    """Bits ``start`` to ``end`` (exclusive) of a ``nbits``-bit number, as (value, length)."""
    return (big >> (nbits - end)) & ((1 << (end - start)) - 1), end - start


def split_blocks(data: bytes) -> tuple[bytes, list[tuple[int, int]]]:
    """The stream header (``BZh9``) and every block of a .bz2 file as (bits, length), in order."""
    if data[:3] != b"BZh":
        raise ValueError("not a bzip2 file")
    big, nbits = int.from_bytes(data, "big"), 8 * len(data)
    starts = _magic_bits(data, big, BLOCK_MAGIC)
    ends = sorted(set(starts[1:]) | set(_magic_bits(data, big, END_MAGIC)))
    blocks = []
    for start in starts:
        end = next(e for e in ends if e > start)  # the next block, or the end of this stream
        blocks.append(_bits(big, nbits, start, end))
    return data[:4], blocks


def _stream(header: bytes, blocks: list[tuple[int, int]]) -> bytes:
    """One bzip2 stream holding ``blocks`` (compressed bits as copied), with its end and CRC."""
    value, length, crc = 0, 0, 0
    for bits, n in blocks:
        block_crc = (bits >> (n - 80)) & 0xFFFFFFFF  # the 32 bits after the 48-bit magic
        crc = (((crc << 1) | (crc >> 31)) & 0xFFFFFFFF) ^ block_crc
        value, length = (value << n) | bits, length + n
    value, length = (value << 80) | (END_MAGIC << 32) | crc, length + 80
    pad = -length % 8
    return header + (value << pad).to_bytes((length + pad) // 8, "big")


def head_lines(data: bytes, lines: int) -> bytes:
    """A .bz2 file holding the first ``lines`` lines of the .bz2 file ``data`` (all of them if fewer)."""
    header, blocks = split_blocks(data)
    kept: list[tuple[int, int]] = []
    tail = b""
    seen = 0
    for block in blocks:
        if seen >= lines:
            break
        text = bz2.decompress(_stream(header, [block]))
        count = text.count(b"\n")
        if seen + count > lines:  # the last line wanted ends inside this block: cut it there, compress that part
            cut = 0
            for _ in range(lines - seen):
                cut = text.index(b"\n", cut) + 1
            tail = bz2.compress(text[:cut], 1)
            break
        kept.append(block)
        seen += count
    return (_stream(header, kept) if kept else b"") + tail or bz2.compress(b"")
