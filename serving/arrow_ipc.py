"""Reading an untrusted Arrow IPC stream: bounded decompressed size, full validation.

A compressed IPC stream (LZ4 / ZSTD buffers) can expand a few kilobytes of body into gigabytes;
pyarrow allocates whatever the stream declares. Before decoding, each record batch's message
header (a flatbuffer, ``Message.fbs`` of the Arrow format) is read for the sizes its buffers will
take once decompressed, and the stream is refused when their sum exceeds the limit. After
decoding, the table is validated in full (offsets, UTF-8), since the IPC reader only checks
what it needs to read.
"""

from __future__ import annotations

import struct

import pyarrow as pa

from serving.schema import RequestError, clip, quoted

# Message.header_type union tags (Arrow format, Message.fbs)
_DICTIONARY_BATCH, _RECORD_BATCH = 2, 3


def read_stream(body: bytes, max_bytes: int) -> pa.Table:
    """An Arrow IPC stream → table; 400 when malformed, 413 when it decodes to more than ``max_bytes``."""
    try:
        total = 0
        for message in pa.ipc.MessageReader.open_stream(pa.BufferReader(body)):
            if message.type in ("record batch", "dictionary"):
                total += decoded_size(message.metadata.to_pybytes(), message.body)
                if total > max_bytes:
                    raise RequestError(f"Arrow stream decodes to more than the limit of {max_bytes} bytes",
                                       field="body", status=413, code="body_too_large")
        table = pa.ipc.open_stream(pa.BufferReader(body)).read_all()
    except (pa.ArrowException, OSError, ValueError, struct.error, IndexError) as exc:
        if isinstance(exc, RequestError):
            raise
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RequestError(f"malformed Arrow IPC stream: {detail}", field="body", status=400, code="malformed_arrow") from None
    for name, column in zip(table.column_names, table.columns):
        try:
            column.validate(full=True)
        except pa.ArrowException as exc:
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise RequestError(f"column {quoted(name)}: invalid data ({clip(detail)})", name, status=400,
                               code="malformed_arrow") from None
    return table


def decoded_size(meta: bytes, body: pa.Buffer | None) -> int:
    """Bytes the batch described by ``meta`` (a Message flatbuffer) takes once decoded."""
    table = _u32(meta, 0)
    kind_at, header_at = _field(meta, table, 1), _field(meta, table, 2)
    if kind_at is None or header_at is None:
        return 0
    batch = _deref(meta, header_at)
    if meta[kind_at] == _DICTIONARY_BATCH:  # DictionaryBatch.data is a RecordBatch
        data_at = _field(meta, batch, 1)
        if data_at is None:
            return 0
        batch = _deref(meta, data_at)
    elif meta[kind_at] != _RECORD_BATCH:
        return 0
    buffers_at = _field(meta, batch, 2)
    if buffers_at is None:
        return 0
    compressed = _field(meta, batch, 3) is not None
    raw = b"" if body is None else body.to_pybytes() if compressed else b""
    vec = _deref(meta, buffers_at)
    total = 0
    for k in range(_u32(meta, vec)):
        offset, length = struct.unpack_from("<qq", meta, vec + 4 + 16 * k)
        if offset < 0 or length < 0:
            raise ValueError("negative buffer offset or length")
        if compressed and length >= 8:
            # each compressed buffer starts with its decompressed length; -1 = stored as is
            declared = struct.unpack_from("<q", raw, offset)[0]
            total += length - 8 if declared == -1 else declared
        else:
            total += length
    return total


def _u32(b: bytes, at: int) -> int:
    return int(struct.unpack_from("<I", b, at)[0])


def _deref(b: bytes, at: int) -> int:
    """Position of the table / vector an offset field at ``at`` points to."""
    return at + _u32(b, at)


def _field(b: bytes, table: int, index: int) -> int | None:
    """Position of field ``index`` of the flatbuffer table at ``table``, None when absent."""
    vtable = table - int(struct.unpack_from("<i", b, table)[0])
    if not 0 <= vtable < len(b):
        raise ValueError("flatbuffer vtable out of range")
    if 4 + 2 * index >= struct.unpack_from("<H", b, vtable)[0]:
        return None
    offset = struct.unpack_from("<H", b, vtable + 4 + 2 * index)[0]
    return table + offset if offset else None
