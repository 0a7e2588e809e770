"""Micro-batching: concurrent requests share ONNX calls, keep their own rows, and drain on close."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from serving.batcher import BatcherClosed, MicroBatcher
from serving.schema import Feed


def _double(calls: list[int]):  # type: ignore[no-untyped-def]
    def predict(feed: Feed) -> dict[str, np.ndarray]:
        calls.append(len(feed["x"]))
        time.sleep(0.01)  # long enough for the other requests to queue up
        return {"y": feed["x"] * 2}

    return predict


def test_concurrent_requests_are_batched_and_split_back() -> None:
    calls: list[int] = []

    async def scenario() -> list[np.ndarray]:
        b = MicroBatcher(_double(calls), max_batch=64, max_wait_ms=5)
        await b.start()
        outs = await asyncio.gather(*[b.submit({"x": np.arange(3) + 10 * i}, 3) for i in range(40)])
        await b.close()
        return [o["y"] for o in outs]

    outs = asyncio.run(scenario())
    for i, y in enumerate(outs):
        np.testing.assert_array_equal(y, (np.arange(3) + 10 * i) * 2)
    assert len(calls) < 40 and max(calls) <= 64 and sum(calls) == 120


def test_failing_batch_fails_its_requests_only() -> None:
    def predict(feed: Feed) -> dict[str, np.ndarray]:
        if (feed["x"] < 0).any():
            raise RuntimeError("boom")
        return {"y": feed["x"]}

    async def scenario() -> tuple[BaseException | None, np.ndarray]:
        b = MicroBatcher(predict, max_batch=8, max_wait_ms=0)
        await b.start()
        bad = None
        try:
            await b.submit({"x": np.array([-1.0])}, 1)
        except RuntimeError as exc:
            bad = exc
        good = await b.submit({"x": np.array([3.0])}, 1)
        await b.close()
        return bad, good["y"]

    bad, good = asyncio.run(scenario())
    assert str(bad) == "boom" and good.tolist() == [3.0]


def test_a_faulty_request_does_not_fail_its_batch_neighbours() -> None:
    calls: list[int] = []

    def predict(feed: Feed) -> dict[str, np.ndarray]:
        calls.append(len(feed["x"]))
        time.sleep(0.01)
        if (feed["x"] < 0).any():
            raise RuntimeError("boom")
        return {"y": feed["x"] * 2}

    async def scenario() -> list[object]:
        b = MicroBatcher(predict, max_batch=64, max_wait_ms=20)
        await b.start()
        xs = [np.array([float(i), float(i)]) if i != 5 else np.array([-1.0, 1.0]) for i in range(12)]
        outs = await asyncio.gather(*[b.submit({"x": x}, 2) for x in xs], return_exceptions=True)
        await b.close()
        return outs

    outs = asyncio.run(scenario())
    assert isinstance(outs[5], RuntimeError) and str(outs[5]) == "boom"
    for i, out in enumerate(outs):
        if i != 5:
            assert out["y"].tolist() == [2.0 * i, 2.0 * i]  # type: ignore[index]
    assert max(calls) > 2  # they did share a batch, which failed and was split up


def test_close_finishes_queued_requests_then_refuses() -> None:
    calls: list[int] = []

    async def scenario() -> None:
        b = MicroBatcher(_double(calls), max_batch=4, max_wait_ms=50)
        await b.start()
        pending = [asyncio.create_task(b.submit({"x": np.array([float(i)])}, 1)) for i in range(10)]
        await asyncio.sleep(0)  # queued, not yet scored
        await b.close()
        assert [p.result()["y"].tolist() for p in pending] == [[2.0 * i] for i in range(10)]
        with pytest.raises(BatcherClosed):
            await b.submit({"x": np.array([1.0])}, 1)

    asyncio.run(scenario())
    assert sum(calls) == 10 and max(calls) <= 4
