"""Helpers for tests of batch-runner workers (real broker, no mocks)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

from events.models import SensorReading
from qi.platform import Platform
from streams.processor import Processor
from streams.runner import BatchRunner


def readings(n: int, *, sensors: int = 10, start: datetime | None = None, value=lambda i: float(i)) -> list[SensorReading]:
    t0 = start or datetime(2026, 11, 1, tzinfo=UTC)
    return [
        SensorReading(occurred_at=t0 + timedelta(seconds=i), source="test", twin_id=f"tw-{i % sensors}",
                      sensor_id="s1", quantity="pressure", value=value(i), unit="kPa")
        for i in range(n)
    ]


@contextlib.asynccontextmanager
async def running(platform: Platform, processor: Processor) -> AsyncIterator[BatchRunner]:
    """A runner for ``processor`` on a task; stopped gracefully (and awaited) on exit."""
    await platform.ensure_topics()
    serde = await platform.serde()
    runner = platform.batch_runner(processor, serde)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        yield runner
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def wait_for(predicate, timeout_s: float = 30.0, every_s: float = 0.1) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(every_s)
