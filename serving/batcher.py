"""Micro-batching: concurrent requests are concatenated into one ONNX call.

A single worker task takes the first queued request, then everything already queued and — up to
``max_wait_ms`` — whatever arrives next, until ``max_batch`` rows; runs the model once in a
worker thread (the event loop keeps accepting requests meanwhile) and hands each request its rows.
Under load, requests that arrive while a batch is running form the next batch, so batching grows
with load without adding latency when idle. Should a batch fail (a request the validation let
through but the model cannot take), its requests are scored one by one, so only the faulty one
fails.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from serving.schema import Feed, concat_feeds

Outputs = dict[str, np.ndarray]


class BatcherClosed(RuntimeError):
    """The batcher is shutting down and takes no new requests."""


@dataclass
class _Item:
    feed: Feed
    rows: int
    future: asyncio.Future[Outputs]


@dataclass
class BatchStats:
    calls: int = 0
    rows: int = 0
    requests: int = 0
    largest: int = 0
    busy_seconds: float = field(default=0.0)


class MicroBatcher:
    """``on_batch(rows, requests, seconds)``, if given, is told about each ONNX call (metrics)."""

    def __init__(self, predict: Callable[[Feed], Outputs], max_batch: int = 1024, max_wait_ms: float = 1.0,
                 on_batch: Callable[[int, int, float], None] | None = None):
        self.predict = predict
        self.on_batch = on_batch
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnx")
        self._worker: asyncio.Task[None] | None = None
        self._closing = False
        self._carry: _Item | None = None

    async def start(self) -> None:
        self._worker = asyncio.create_task(self._run(), name="micro-batcher")

    @property
    def running(self) -> bool:
        return self._worker is not None and not self._worker.done() and not self._closing

    async def submit(self, feed: Feed, rows: int) -> Outputs:
        if self._closing or self._worker is None:
            raise BatcherClosed("server is shutting down")
        item = _Item(feed, rows, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(item)
        return await item.future

    async def close(self) -> None:
        """Stop taking requests, finish every queued one, stop the worker."""
        self._closing = True
        await self._queue.join()
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)

    async def _collect(self) -> list[_Item]:
        first, self._carry = self._carry, None
        items = [first if first is not None else await self._queue.get()]
        rows = items[0].rows
        deadline = time.perf_counter() + self.max_wait
        while rows < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), left)
                except asyncio.TimeoutError:
                    break
            if rows + item.rows > self.max_batch:
                self._carry = item  # would overflow: it opens the next batch
                break
            items.append(item)
            rows += item.rows
        return items

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = await self._collect()
            try:
                started = time.perf_counter()
                outputs = await loop.run_in_executor(self._executor, self.predict, concat_feeds([i.feed for i in items]))
                self._record(items, time.perf_counter() - started)
                start = 0
                for item in items:
                    if not item.future.done():
                        item.future.set_result({k: v[start:start + item.rows] for k, v in outputs.items()})
                    start += item.rows
            except Exception as exc:  # a failing batch fails its requests, never the worker
                if len(items) == 1:
                    if not items[0].future.done():
                        items[0].future.set_exception(exc)
                else:  # score each request alone: only the one at fault fails, not its batch neighbours
                    for item in items:
                        await self._score_alone(loop, item)
            finally:
                for _ in items:
                    self._queue.task_done()

    async def _score_alone(self, loop: asyncio.AbstractEventLoop, item: _Item) -> None:
        try:
            outputs = await loop.run_in_executor(self._executor, self.predict, item.feed)
        except Exception as exc:
            if not item.future.done():
                item.future.set_exception(exc)
        else:
            if not item.future.done():
                item.future.set_result(outputs)

    def _record(self, items: list[_Item], seconds: float) -> None:
        rows = sum(i.rows for i in items)
        s = self.stats
        s.calls += 1
        s.rows += rows
        s.requests += len(items)
        s.largest = max(s.largest, rows)
        s.busy_seconds += seconds
        if self.on_batch is not None:
            self.on_batch(rows, len(items), seconds)
