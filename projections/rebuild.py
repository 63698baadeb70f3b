"""Rebuild a projection from the beginning of the log into a fresh target, then swap (blue/green).

1. A fresh target (Postgres schema ``<name>__rb<stamp>``, Redis generation ``rb<stamp>``) is
   filled by its own runner in a fresh consumer group, from offset 0, while the live target
   keeps serving and the live projector keeps writing it.
2. Caught up (its positions reach the log end): the target is made live atomically (Postgres:
   both schema renames in one transaction; Redis: one GETSET of ``qi:<name>:current``, which
   the live projector's Lua script follows).
3. The rebuild runner keeps going until it has passed the log end measured *after* the swap, so
   a batch the live projector wrote into the old target while the swap happened is in the new
   one too (both writers are idempotent); then it stops and the old target is dropped.

Progress (events done / total, rate, ETA) goes to a callback (the CLI draws a bar).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from events.reader import log_end_offsets
from projections.framework import Positions, Projection, ProjectionProcessor, next_positions
from qi.platform import Platform

log = structlog.get_logger(__name__)


@dataclass
class Progress:
    done: int
    total: int
    rate: float
    eta_s: float | None
    phase: str


async def end_offsets(platform: Platform, families: tuple[str, ...]) -> Positions:
    """The log end of every partition of the families' topics."""
    consumer = AIOKafkaConsumer(bootstrap_servers=platform.endpoints().kafka, enable_auto_commit=False,
                                client_id=f"{platform.settings.kafka.client_id}-lag")
    await consumer.start()
    try:
        tps = []
        for f in families:
            topic = platform.topics.topic(f)
            parts = consumer.partitions_for_topic(topic)
            if parts is None:
                await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public refresh
                parts = consumer.partitions_for_topic(topic) or set()
            tps += [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        ends = await log_end_offsets(consumer, tps)
        return {(tp.topic, tp.partition): o for tp, o in ends.items()}
    finally:
        await consumer.stop()


class _Tracking(ProjectionProcessor):
    """Remembers the positions it has applied (the sink's may be shared with the live writer after the swap)."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.seen: Positions = {}

    async def process(self, records):
        result = await super().process(records)
        await self.drain()  # "seen" means applied
        for tp, o in next_positions(records).items():
            self.seen[tp] = max(self.seen.get(tp, 0), o)
        return result


def behind(at: Positions, end: Positions) -> int:
    """Events between the positions ``at`` and the log ``end``."""
    return sum(max(0, o - at.get(tp, 0)) for tp, o in end.items())


async def catch_up(platform: Platform, families, positions: Callable[[], Positions], task: asyncio.Task,
                   on_progress: Callable[[Progress], None], every_s: float, t0: float) -> int:
    """Report progress until ``positions()`` reach the log end, then return the events replayed;
    raise if the replaying ``task`` stops first."""
    while True:
        end = await end_offsets(platform, tuple(families))
        total = sum(end.values())
        left = behind(positions(), end)
        done = total - left
        rate = done / max(time.monotonic() - t0, 1e-6)
        on_progress(Progress(done, total, rate, left / rate if rate > 0 else None, "replaying"))
        if left == 0:
            return total
        if task.done():
            task.result()  # the runner died: raise its error
            raise RuntimeError("rebuild runner stopped before catching up")
        await asyncio.sleep(every_s)


async def rebuild(platform: Platform, projection: Projection, kind: str, *,
                  on_progress: Callable[[Progress], None] = lambda p: None, every_s: float = 0.5,
                  stamp: str | None = None) -> dict:
    stamp = stamp or f"rb{int(time.time() * 1000)}"
    sink = platform.projection_sink(projection, kind, generation=stamp)
    target = sink.target
    await platform.ensure_topics()
    serde = await platform.serde()
    processor = _Tracking(projection, sink, name=f"rebuild-{projection.name}-{kind}-{stamp}")
    runner = platform.batch_runner(processor, serde)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    t0 = time.monotonic()
    try:
        # 1. fill the fresh target
        total = await catch_up(platform, projection.families, lambda: processor.seen, task, on_progress, every_s, t0)
        old = await sink.promote()  # 2. swap atomically
        log.info("projection.swapped", projection=projection.name, sink=kind, target=target,
                 old=old.target if old else None)
        after = await end_offsets(platform, projection.families)  # 3. pass what the live writer had in flight
        while behind(processor.seen, after) > 0:
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
    if old is not None:
        await old.drop()
        await old.close()
    await sink.close()
    on_progress(Progress(total, total, total / max(time.monotonic() - t0, 1e-6), 0.0, "swapped"))
    return {"projection": projection.name, "sink": kind, "target": target, "dropped": old.target if old else None,
            "events": sum(processor.seen.values()), "seconds": round(time.monotonic() - t0, 2)}
