"""Reading and parsing a request body: size and time limits, JSON that cannot crash the parser.

Every failure is a :class:`RequestError` (4xx) or :class:`ClientGone` (the client hung up; no
answer is possible), never an exception the server does not expect.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from typing import Any, Coroutine

from starlette.requests import ClientDisconnect, Request

from serving.schema import HugeInt, RequestError, clip

#: a JSON escape of a UTF-16 surrogate: the only way a lone surrogate gets into a parsed string
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class ClientGone(Exception):
    """The client closed the connection before its request body was complete."""


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The whole body: 413 over ``limit`` bytes (declared or streamed), 408 when it takes longer
    than ``timeout`` seconds, 400 when empty."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()) or len(declared) > 18:
            raise RequestError(f"invalid Content-Length {declared[:40]!r}", field="content-length", status=400, code="bad_header", close=True)
        if int(declared) > limit:
            # a body up to twice the limit is skipped by the HTTP parser and the connection kept
            raise RequestError(f"body of {declared[:40]} bytes exceeds the limit of {limit}", field="body", status=413,
                               code="body_too_large", close=int(declared) > 2 * limit)
    try:
        chunks = await _within(_collect(request, limit), timeout)
    except asyncio.TimeoutError:
        raise RequestError(f"request body not received within {timeout:g} s", field="body", status=408, code="body_timeout",
                           close=True) from None
    except ClientDisconnect:
        raise ClientGone() from None
    body = b"".join(chunks)
    if not body.strip():
        raise RequestError("empty body", field="body", status=400, code="empty_body")
    return body


async def _collect(request: Request, limit: int) -> list[bytes]:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(f"body exceeds the limit of {limit} bytes", field="body", status=413, code="body_too_large",
                               close=True)
        chunks.append(chunk)
    return chunks


async def _within(reading: Coroutine[Any, Any, list[bytes]], seconds: float) -> list[bytes]:
    if sys.version_info >= (3, 11):  # no extra task per request
        async with asyncio.timeout(seconds):
            return await reading
    return await asyncio.wait_for(reading, seconds)


def parse_json(body: bytes) -> tuple[Any, bool]:
    """(parsed body, whether it holds a surrogate escape whose strings need a Unicode check).

    Nesting too deep for the parser is a 400; an integer too long for Python's int conversion is
    kept as a :class:`HugeInt`, so validation rejects it naming its field.
    """
    try:
        value = json.loads(body)
    except RecursionError:
        raise _malformed("nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, or the int-digit limit
        value = _parse_again(body, exc)
    # two plain substring searches first (fast); the pattern only when one of them hits
    maybe = b"\\ud" in body or b"\\uD" in body
    return value, maybe and _SURROGATE_ESCAPE.search(body) is not None


def _parse_again(body: bytes, first: ValueError) -> Any:
    if isinstance(first, UnicodeDecodeError):
        raise _malformed("body is not UTF-8") from None
    if isinstance(first, json.JSONDecodeError):
        raise _malformed(f"{first.msg} (line {first.lineno}, column {first.colno})") from None
    try:  # the int-digit limit: parse again with long integers kept as placeholders
        return json.loads(body, parse_int=_bounded_int)
    except RecursionError:
        raise _malformed("nested too deeply") from None
    except ValueError as exc:
        raise _malformed(clip(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)) from None


def _malformed(detail: str) -> RequestError:
    return RequestError(f"malformed JSON: {detail}", field="body", status=400, code="malformed_json")


def _bounded_int(text: str) -> int | HugeInt:
    # no float64 needs more than 309 integer digits: longer ones are only ever rejected
    return HugeInt(text) if len(text) > 400 else int(text)
