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
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from events.base import Event
from events.errors import PublishError
from events.serde import Serde
from events.topics import TopicNames

#: Keys whose partition is remembered (a bounded cache: cleared when full).
_PARTITION_CACHE_SIZE = 200_000


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where the broker stored an event."""

    event_id: str | None
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class OutgoingRecord:
    """An already-encoded record to publish."""

    topic: str
    key: bytes | None
    value: bytes
    event_id: str | None = None


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
        self._partition_of: dict[tuple[str, bytes], int] = {}
        self._partition_counts: dict[str, int] = {}
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
        """Send encoded records in batches, one ordered stream per partition."""
        groups: dict[tuple[str, int], list[int]] = {}
        partitions: dict[str, list[int]] = {}
        cache = self._partition_of
        for i, rec in enumerate(records):
            if rec.topic not in partitions:
                parts = sorted(await self._partitions_for(rec.topic))
                partitions[rec.topic] = parts
                if self._partition_counts.get(rec.topic) != len(parts):  # repartitioned: forget
                    self._partition_counts[rec.topic] = len(parts)
                    cache.clear()
            parts = partitions[rec.topic]
            if rec.key is None:
                p = self._partitioner(rec.key, parts, parts)
            else:
                p = cache.get((rec.topic, rec.key), -1)
                if p < 0:  # murmur2 costs ~5 us in Python: once per key, not once per record
                    if len(cache) >= _PARTITION_CACHE_SIZE:
                        cache.clear()
                    p = cache[(rec.topic, rec.key)] = self._partitioner(rec.key, parts, parts)
            groups.setdefault((rec.topic, p), []).append(i)
        results: list[Delivery | None] = [None] * len(records)
        await asyncio.gather(
            *(self._send_partition(t, p, idx, records, results) for (t, p), idx in groups.items())
        )
        return results  # type: ignore[return-value]  # every slot is filled or we raised

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
        results: list[Delivery | None],
    ) -> None:
        pending: list[tuple[asyncio.Future, list[int]]] = []
        batch, members = self._producer.create_batch(), []
        for i in indexes:
            rec = records[i]
            if batch.append(key=rec.key, value=rec.value, timestamp=None) is None:
                if not members:
                    raise PublishError(
                        f"record of {len(rec.value)} bytes is larger than a batch",
                        event_id=rec.event_id, topic=topic, retriable=False,
                    )
                pending.append((await self._send_batch(batch, topic, partition, records[members[0]]), members))
                batch, members = self._producer.create_batch(), []
                if batch.append(key=rec.key, value=rec.value, timestamp=None) is None:
                    raise PublishError(
                        f"record of {len(rec.value)} bytes is larger than a batch",
                        event_id=rec.event_id, topic=topic, retriable=False,
                    )
            members.append(i)
        if members:
            pending.append((await self._send_batch(batch, topic, partition, records[members[0]]), members))
        for fut, members in pending:
            try:
                md = await fut
            except KafkaError as e:
                raise _publish_error(e, records[members[0]]) from e
            for n, i in enumerate(members):
                results[i] = Delivery(records[i].event_id, topic, partition, md.offset + n)

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
