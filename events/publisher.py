"""Publishing events: the Python API for upstream systems.

``publish(event)`` sends one event and returns when the broker confirmed it;
``publish_many(events)`` encodes everything first (nothing is sent if any
event does not encode), then writes one record batch after another per
partition, all partitions at once, and returns a confirmation per event, in
order. Keys are the aggregate id, so one aggregate's events share a partition
and keep their order.

Kafka transactions and idempotent producing are not used (the embedded broker
cannot do them with aiokafka, see docs/decisions/0005-delivery-guarantees.md):
delivery is at-least-once and sinks deduplicate on ``event_id`` /
``aggregate_version``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from events.base import Event
from events.errors import PublishError
from events.serde import Serde
from events.topics import TopicNames

#: Keys whose partition is remembered, per topic (a bounded cache: cleared when full).
_PARTITION_CACHE_SIZE = 200_000


class Delivery(NamedTuple):
    """Where the broker stored an event."""

    event_id: str | None
    topic: str
    partition: int
    offset: int


class OutgoingRecord(NamedTuple):
    """An already-encoded record to publish (NamedTuples both: one per record on the hot path,
    where a frozen dataclass costs ~5x as much to build; decision 0148)."""

    topic: str
    key: bytes | None
    value: bytes
    event_id: str | None = None


@dataclass(slots=True)
class _Lane:
    """One partition's calls waiting for its batches in flight to be acknowledged."""

    waiting: list[tuple[list[OutgoingRecord], asyncio.Future]] = field(default_factory=list)
    busy: bool = False


class Publisher:
    """Publishes events to their topics. ``start()`` before use, ``close()`` after."""

    def __init__(
        self,
        *,
        bootstrap: str,
        serde: Serde,
        topics: TopicNames,
        client_id: str = "qi-publisher",
        linger_ms: int = 5,
        request_timeout_ms: int = 30_000,
        max_batch_bytes: int = 1_000_000,
    ) -> None:
        self._serde = serde
        self._topics = topics
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            client_id=client_id,
            acks="all",
            linger_ms=linger_ms,
            request_timeout_ms=request_timeout_ms,
            max_batch_size=max_batch_bytes,
            max_request_size=max(max_batch_bytes, 1_048_576),
        )
        self._partitioner = DefaultPartitioner()
        self._partition_of: dict[str, dict[bytes, int]] = {}  # per topic: key -> partition
        self._partition_counts: dict[str, int] = {}
        self._lanes: dict[tuple[str, int], _Lane] = {}
        self._started = False

    async def start(self) -> None:
        try:
            await self._producer.start()
        except KafkaError as e:
            raise PublishError(f"cannot connect to Kafka: {e}", event_id=None, topic="", retriable=True) from e
        self._started = True

    async def close(self) -> None:
        """Flush what is pending and disconnect."""
        if self._started:
            self._started = False
            await self._producer.stop()

    async def __aenter__(self) -> Publisher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def record_for(self, event: Event) -> OutgoingRecord:
        """Encode an event into the record that carries it (raises EncodeError)."""
        return OutgoingRecord(
            topic=self._topics.topic(event.TOPIC_FAMILY),
            key=event.key().encode(),
            value=self._serde.encode_event(event),
            event_id=str(event.event_id),
        )

    async def publish(self, event: Event) -> Delivery:
        """Send one event and wait for the broker's confirmation."""
        rec = self.record_for(event)
        try:
            fut = await self._producer.send(rec.topic, rec.value, key=rec.key)
            md = await fut
        except KafkaError as e:
            raise _publish_error(e, rec) from e
        return Delivery(rec.event_id, md.topic, md.partition, md.offset)

    async def publish_many(self, events: Iterable[Event]) -> list[Delivery]:
        """Send many events in record batches; confirmations in input order."""
        records = [self.record_for(e) for e in events]
        return await self.publish_records(records)

    async def publish_records(self, records: Sequence[OutgoingRecord]) -> list[Delivery]:
        """Send encoded records in batches, one ordered stream per partition; a confirmation per record."""
        results: list[Delivery | None] = [None] * len(records)
        await self._publish(records, results)
        return results  # type: ignore[return-value]  # every slot is filled or we raised

    async def publish_all(self, records: Sequence[OutgoingRecord]) -> None:
        """:meth:`publish_records` for callers that need no confirmation per record (the workers:
        they only need to know that the broker acknowledged all of them). Same batches, same
        errors; no :class:`Delivery` built per record."""
        await self._publish(records, None)

    async def _publish(self, records: Sequence[OutgoingRecord], results: list[Delivery | None] | None) -> None:
        groups: dict[tuple[str, int], list[int]] = {}
        partitions: dict[str, list[int]] = {}
        by_topic: dict[str, dict[bytes, int]] = {}  # key -> partition, per topic (the cache's)
        cache = self._partition_of
        last_topic, last_key, last_group = None, None, None  # runs of one key: one lookup
        for i, rec in enumerate(records):
            topic, key = rec.topic, rec.key
            if key is not None and key == last_key and topic == last_topic:
                last_group.append(i)  # type: ignore[union-attr]
                continue
            parts = partitions.get(topic)
            if parts is None:
                parts = partitions[topic] = sorted(await self._partitions_for(topic))
                if self._partition_counts.get(topic) != len(parts):  # repartitioned: forget its keys
                    self._partition_counts[topic] = len(parts)
                    cache[topic] = {}
                by_topic[topic] = cache.setdefault(topic, {})
            if key is None:
                p = self._partitioner(key, parts, parts)
            else:
                known = by_topic[topic]
                p = known.get(key, -1)
                if p < 0:  # murmur2 costs ~5 us in Python: once per key, not once per record
                    if len(known) >= _PARTITION_CACHE_SIZE:
                        known.clear()
                    p = known[key] = self._partitioner(key, parts, parts)
            group = groups.get((topic, p))
            if group is None:
                group = groups[(topic, p)] = []
            group.append(i)
            last_topic, last_key, last_group = topic, key, group
        await asyncio.gather(
            *(self._send_partition(t, p, idx, records, results) for (t, p), idx in groups.items())
        )

    async def prepare_topics(self, topics: Iterable[str]) -> None:
        """Fetch the topics' metadata now, so that the first publish does not wait for it."""
        for topic in topics:
            await self._partitions_for(topic)

    async def _partitions_for(self, topic: str) -> set[int]:
        try:
            return await self._producer.partitions_for(topic)
        except KafkaError as e:
            raise PublishError(
                f"no metadata for topic {topic}: {e}", event_id=None, topic=topic, retriable=True
            ) from e

    async def _send_partition(
        self,
        topic: str,
        partition: int,
        indexes: list[int],
        records: Sequence[OutgoingRecord],
        results: list[Delivery | None] | None,
    ) -> None:
        """Queue the records on the partition's lane and wait for their offsets. Records queued while
        the lane's previous batches are unacknowledged go out together in the next ones: the producer
        sends one batch per partition per request and one request at a time, so per-call batches
        would make a durable log (a write per request) take one small call per round trip."""
        lane = self._lanes.get((topic, partition))
        if lane is None:
            lane = self._lanes[(topic, partition)] = _Lane()
        mine = [records[i] for i in indexes]
        done = asyncio.get_running_loop().create_future()
        lane.waiting.append((mine, done))
        if not lane.busy:
            lane.busy = True
            asyncio.ensure_future(self._drain(lane, topic, partition))
        offsets = await done
        if results is not None:
            for i, offset in zip(indexes, offsets, strict=True):
                results[i] = Delivery(records[i].event_id, topic, partition, offset)

    async def _drain(self, lane: _Lane, topic: str, partition: int) -> None:
        """Send everything waiting on ``lane`` in as few batches as fit, until nothing waits."""
        try:
            while lane.waiting:
                calls, lane.waiting = lane.waiting, []
                flat = [rec for recs, _ in calls for rec in recs]
                try:
                    offsets = await self._send_records(topic, partition, flat)
                except PublishError as e:
                    if e.retriable or len(calls) == 1:
                        for _, fut in calls:
                            if not fut.done():
                                fut.set_exception(e)
                    else:  # e.g. one call's oversized record: each call gets its own answer
                        await self._send_each(calls, topic, partition)
                    continue
                at = 0
                for recs, fut in calls:
                    if not fut.done():
                        fut.set_result(offsets[at:at + len(recs)])
                    at += len(recs)
        finally:
            lane.busy = False

    async def _send_each(self, calls: list[tuple[list[OutgoingRecord], asyncio.Future]], topic: str,
                         partition: int) -> None:
        for recs, fut in calls:
            try:
                offsets = await self._send_records(topic, partition, recs)
            except PublishError as e:
                if not fut.done():
                    fut.set_exception(e)
                continue
            if not fut.done():
                fut.set_result(offsets)

    async def _send_records(self, topic: str, partition: int, recs: list[OutgoingRecord]) -> list[int]:
        """Records in order, in batches of at most ``max_batch_bytes``; their offsets."""
        pending: list[tuple[asyncio.Future, int, int]] = []  # (ack, first index, count)
        batch, first, n = self._producer.create_batch(), 0, 0
        for i, rec in enumerate(recs):
            if batch.append(key=rec.key, value=rec.value, timestamp=None) is None:
                if not n:
                    raise PublishError(
                        f"record of {len(rec.value)} bytes is larger than a batch",
                        event_id=rec.event_id, topic=topic, retriable=False,
                    )
                pending.append((await self._send_batch(batch, topic, partition, recs[first]), first, n))
                batch, first, n = self._producer.create_batch(), i, 0
                if batch.append(key=rec.key, value=rec.value, timestamp=None) is None:
                    raise PublishError(
                        f"record of {len(rec.value)} bytes is larger than a batch",
                        event_id=rec.event_id, topic=topic, retriable=False,
                    )
            n += 1
        if n:
            pending.append((await self._send_batch(batch, topic, partition, recs[first]), first, n))
        offsets = [0] * len(recs)
        for fut, first, n in pending:
            try:
                md = await fut
            except KafkaError as e:
                raise _publish_error(e, recs[first]) from e
            offsets[first:first + n] = range(md.offset, md.offset + n)
        return offsets

    async def _send_batch(self, batch, topic: str, partition: int, first: OutgoingRecord) -> asyncio.Future:
        try:
            return await self._producer.send_batch(batch, topic, partition=partition)
        except KafkaError as e:
            raise _publish_error(e, first) from e


def _publish_error(e: KafkaError, rec: OutgoingRecord) -> PublishError:
    return PublishError(
        f"broker did not confirm event {rec.event_id} on {rec.topic}: {type(e).__name__}: {e}",
        event_id=rec.event_id,
        topic=rec.topic,
        retriable=bool(getattr(e, "retriable", False)),
    )
