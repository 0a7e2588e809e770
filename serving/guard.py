"""The ASGI layer every HTTP request passes through: errors to answers, and one record per request.

* :class:`RequestError` → its 4xx JSON body ``{"error", "code", "field"}``; ``Connection: close``
  when the connection cannot be reused (the body was not read to its end).
* :class:`ClientGone` → no answer (nobody is listening), logged at debug level.
* :class:`BatcherClosed` → 503 (shutting down).
* anything else is a server bug: logged with its traceback and answered with a 500 JSON body
  that says ``Connection: close``, so a keep-alive client knows to reconnect instead of losing
  its next request on a connection the server drops.

Each finished request becomes a :class:`RequestRecord` handed to the observers (metrics, access log).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable, NamedTuple, Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.batcher import BatcherClosed
from serving.body import ClientGone
from serving.schema import RequestError

log = logging.getLogger(__name__)


class RequestRecord(NamedTuple):
    method: str
    path: str
    status: int  # 0: the client left before an answer
    seconds: float
    error: str | None  # RequestError.code, "client_gone", "shutting_down" or "internal"
    client: tuple[str, int] | None  # (host, port)


Observer = Callable[[RequestRecord], None]


def json_error(status: int, body: dict[str, Any], close: bool = False) -> tuple[Message, Message]:
    """The two ASGI messages of a JSON error answer (ASCII-escaped: no client text can break it)."""
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    return ({"type": "http.response.start", "status": status, "headers": headers},
            {"type": "http.response.body", "body": payload, "more_body": False})


class Guard:
    """ASGI middleware (``app.add_middleware(Guard, observers=[...])``)."""

    def __init__(self, app: ASGIApp, observers: Sequence[Observer] = ()):
        self.app = app
        self.observers = list(observers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_at = time.perf_counter()
        status, error = 0, None

        async def tracked(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except RequestError as exc:
            error = exc.code
            await self._answer(tracked, status, exc.status, exc.body(), close=exc.close)
        except ClientGone:
            error = "client_gone"
            log.debug("client %s left before sending its whole request", scope.get("client"))
        except BatcherClosed as exc:
            error = "shutting_down"
            await self._answer(tracked, status, 503, {"error": str(exc), "code": error})
        except Exception:
            error = "internal"
            log.exception("internal error on %s %s", scope.get("method"), scope.get("path"))
            if status:  # the answer has begun: only closing the connection is left (the server does it)
                raise
            await self._answer(tracked, status, 500, {"error": "internal server error", "code": error}, close=True)
        finally:
            if self.observers:
                record = RequestRecord(scope.get("method", ""), scope.get("path", ""), status,
                                       time.perf_counter() - started_at, error, scope.get("client"))
                for observe in self.observers:
                    observe(record)

    @staticmethod
    async def _answer(send: Send, started: int, status: int, body: dict[str, Any], close: bool = False) -> None:
        if started:
            raise RuntimeError("an error after the answer began")
        for message in json_error(status, body, close):
            await send(message)
