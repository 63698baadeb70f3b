"""Reading events back off the log (``qi tail``, tests, replay tools).

Reads whole topics by assigning every partition (no consumer group, no
committed offsets), from the beginning or from the current end. Poison
records are returned with their decode error, never raised: the caller decides
whether that means the dead-letter topic or a line on stderr.

The log end is found from a fetch's high watermark, not from ListOffsets:
the embedded broker (Tansu) answers ListOffsets(latest) with the base offset
of the last record batch + 1, which is too low whenever a batch holds more
than one record (docs/decisions/0004-log-end-from-high-watermark.md). A fetch
at the reported end - 1 is cheap and correct on every broker.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Literal, NamedTuple

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from events.errors import DecodeError, EventsError
from events.serde import Decoded, Serde

StartAt = Literal["beginning", "end"]


class ReaderError(EventsError):
    def __init__(self, message: str, *, retriable: bool) -> None:
        super().__init__(message)
        self.retriable = retriable


class ConsumedRecord(NamedTuple):
    """One record as read: where it was, its bytes, and what decoding made of it.

    A NamedTuple, not a frozen dataclass: one is built per record on every worker's hot path, and
    a frozen dataclass costs ~5x as much to build (decision 0148).
    """

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes
    decoded: Decoded | None
    error: DecodeError | None


class EventReader:
    """Reads and decodes every partition of some topics."""

    def __init__(
        self,
        *,
        bootstrap: str,
        serde: Serde,
        topics: list[str],
        start_at: StartAt = "beginning",
        client_id: str = "qi-reader",
    ) -> None:
        self._serde = serde
        self._topics = topics
        self._start_at = start_at
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        self._tps: list[TopicPartition] = []
        self._started = False

    async def start(self) -> None:
        c = self._consumer
        try:
            await c.start()
            self._started = True
            known = await c.topics()
            missing = [t for t in self._topics if t not in known]
            if missing:
                raise ReaderError(f"no such topic: {', '.join(missing)}", retriable=False)
            self._tps = [
                TopicPartition(t, p) for t in self._topics for p in sorted(c.partitions_for_topic(t) or ())
            ]
            c.assign(self._tps)
            if self._start_at == "end":
                for tp, off in (await log_end_offsets(c, self._tps)).items():
                    c.seek(tp, off)
            else:
                await c.seek_to_beginning(*self._tps)
        except KafkaError as e:
            raise ReaderError(f"cannot read from Kafka: {e}", retriable=True) from e

    async def close(self) -> None:
        if self._started:
            self._started = False
            await self._consumer.stop()

    async def __aenter__(self) -> EventReader:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def partitions(self) -> list[TopicPartition]:
        return list(self._tps)

    async def batches(self, *, timeout_ms: int = 500, max_records: int = 5000) -> AsyncIterator[list[ConsumedRecord]]:
        """Fetch batches forever (an empty list when a fetch timed out)."""
        while True:
            try:
                fetched = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
            except KafkaError as e:
                raise ReaderError(f"fetch failed: {e}", retriable=True) from e
            out: list[ConsumedRecord] = []
            for tp, messages in fetched.items():
                for m in messages:
                    out.append(await self._decode(tp, m))
            yield out

    async def _decode(self, tp: TopicPartition, m) -> ConsumedRecord:
        decoded, error = None, None
        try:
            decoded = await self._serde.decode_resolving(m.value or b"")
        except DecodeError as e:
            error = e
        return ConsumedRecord(tp.topic, tp.partition, m.offset, m.timestamp, m.key, m.value or b"", decoded, error)

    async def read(self, *, limit: int | None = None, idle_timeout_s: float = 2.0) -> list[ConsumedRecord]:
        """Read until ``limit`` records, or until nothing arrives for ``idle_timeout_s``."""
        out: list[ConsumedRecord] = []
        idle_since = time.monotonic()
        async for batch in self.batches(timeout_ms=200):
            if batch:
                out.extend(batch)
                idle_since = time.monotonic()
            if limit is not None and len(out) >= limit:
                return out[:limit]
            if time.monotonic() - idle_since >= idle_timeout_s:
                return out
        return out  # pragma: no cover - batches() never ends

    async def read_to_end(self, *, limit: int | None = None, timeout_s: float = 30.0) -> list[ConsumedRecord]:
        """Read everything up to the log end as it was when called."""
        c = self._consumer
        positions = {tp: await c.position(tp) for tp in self._tps}
        ends = await log_end_offsets(c, self._tps)
        for tp, pos in positions.items():
            c.seek(tp, pos)
        out: list[ConsumedRecord] = []
        deadline = time.monotonic() + timeout_s
        remaining = {tp for tp in self._tps if ends[tp] > positions[tp]}
        async for batch in self.batches(timeout_ms=200):
            for rec in batch:
                tp = TopicPartition(rec.topic, rec.partition)
                if rec.offset < ends[tp]:
                    out.append(rec)
                if rec.offset >= ends[tp] - 1:
                    remaining.discard(tp)
            if not remaining or (limit is not None and len(out) >= limit):
                return out[:limit] if limit is not None else out
            if time.monotonic() > deadline:
                raise ReaderError(f"log end not reached within {timeout_s}s", retriable=True)
        return out  # pragma: no cover


async def log_end_offsets(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], *, timeout_s: float = 10.0
) -> dict[TopicPartition, int]:
    """The true log-end offset of each assigned partition, from a fetch's high watermark.

    Moves the consumer's positions: callers seek afterwards.
    """
    if not tps:
        return {}
    reported = await consumer.end_offsets(tps)
    beginning = await consumer.beginning_offsets(tps)
    for tp in tps:
        consumer.seek(tp, max(reported[tp] - 1, beginning[tp]))
    deadline = time.monotonic() + timeout_s
    while any(consumer.highwater(tp) is None for tp in tps):
        if time.monotonic() > deadline:
            break
        await consumer.getmany(*tps, timeout_ms=100, max_records=1)
    return {tp: max(consumer.highwater(tp) or 0, reported[tp]) for tp in tps}
