"""uvicorn's httptools protocol with limits for slow and oversized request headers.

uvicorn times out idle keep-alive connections but not a request whose headers arrive slowly (the
first byte cancels the idle timer), nor a connection that never sends anything, and httptools
buffers headers of any size. Here the header block of each request must be complete within
``header_timeout`` seconds of the connection opening or of the request's first byte (else 408
and close) and fit in ``max_header_bytes`` (else 431 and close). Body read time is limited by the
app (:func:`serving.body.read_body`).

Use: ``uvicorn.run(app, http=functools.partial(LimitedHttpToolsProtocol, header_timeout=10,
max_header_bytes=65536))`` (a partial of a module-level class pickles, so ``--workers`` works).

Closing a connection whose request the server has not read to the end (a refused header block, a
413 or 408 from the app) would make the kernel answer the unread bytes with a reset, and the client
would lose the error answer it was sent. Such connections close gracefully instead: the answer is
followed by end-of-stream, what the client still sends is read and dropped, and the socket closes
once the client closes its side or after ``LINGER_S`` seconds (as nginx's lingering close).
"""

from __future__ import annotations

import asyncio
import json
import logging
import select
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}
#: longest a closing connection keeps draining what its client still sends
LINGER_S = 2.0


class _LingeringTransport:
    """The connection's transport as a request sees it: ``close`` lingers while the request body is unread."""

    def __init__(self, protocol: "LimitedHttpToolsProtocol"):
        self._protocol = protocol
        self._transport = protocol.transport

    def close(self) -> None:
        self._protocol.close_gracefully()

    def is_closing(self) -> bool:
        return self._protocol.lingering or self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, header_timeout: float = 10.0, max_header_bytes: int = 64 * 1024, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self.max_header_bytes = max_header_bytes
        self._header_timer: asyncio.TimerHandle | None = None
        # True from a request's first byte (or the connection's opening) until its headers are complete
        self._in_headers = True
        self._header_bytes = 0
        self.lingering = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return  # closing: what the client still sends is dropped
        was_in_headers = self._in_headers
        super().data_received(data)
        # a chunk that holds only header bytes counts in full; one that starts or ends a header
        # block is not counted, so the limit is exceeded by one chunk at most
        if was_in_headers and self._in_headers:
            self._header_bytes += len(data)
            if self._header_bytes > self.max_header_bytes and not self.transport.is_closing():
                log.debug("client %s: request headers over %d bytes", self.client, self.max_header_bytes)
                self._refuse(431, f"request headers exceed {self.max_header_bytes} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._header_bytes = 0
        if self._header_timer is None:
            self._arm()

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._disarm()
        super().on_headers_complete()
        if self.cycle is not None:
            self.cycle.transport = _LingeringTransport(self)  # type: ignore[assignment]

    def close_gracefully(self) -> None:
        """Close after the answer; linger first when the client may still be sending."""
        if self.lingering or self.transport.is_closing():
            return
        if self.cycle is None or not self.cycle.more_body or not self.transport.can_write_eof():
            self.transport.close()
            return
        self.lingering = True
        self._disarm()
        self._unset_keepalive_if_required()
        self.transport.write_eof()
        self.flow.resume_reading()
        self.loop.call_later(LINGER_S, self.transport.close)

    def eof_received(self) -> bool | None:
        if self.lingering:
            self.transport.close()  # the client is done too
        return None

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_timed_out)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_timed_out(self) -> None:
        self._header_timer = None
        if self._in_headers and not self.transport.is_closing() and self._bytes_waiting():
            # the event loop was busy and has not read what arrived (uvloop runs due timers before
            # polling sockets): judge once it has
            self._header_timer = self.loop.call_later(0.05, self._headers_timed_out)
            return
        if self._in_headers and not self.transport.is_closing():
            log.debug("client %s: request headers not complete within %g s", self.client, self.header_timeout)
            self._refuse(408, f"request headers not received within {self.header_timeout:g} s")

    def _bytes_waiting(self) -> bool:
        """Whether the socket holds bytes the event loop has not read yet."""
        sock = self.transport.get_extra_info("socket")
        try:
            return bool(sock is not None and select.select([sock.fileno()], [], [], 0)[0])
        except (OSError, ValueError):
            return False

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` (unless another request's answer is under way) and close."""
        self._disarm()
        if self.cycle is None or self.cycle.response_complete:
            code = "header_timeout" if status == 408 else "headers_too_large"
            body = json.dumps({"error": message, "code": code}).encode()
            head = (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                    b"connection: close\r\n\r\n" % (status, _REASONS[status], len(body)))
            self.transport.write(head + body)
            self.lingering = True
            self.transport.write_eof()
            self.loop.call_later(LINGER_S, self.transport.close)
        else:
            self.transport.close()
