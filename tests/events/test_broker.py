"""Publishing and reading through the real broker of the local stack."""

import asyncio
from collections import defaultdict
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from events.errors import PublishError
from events.models import SensorReading
from events.publisher import OutgoingRecord, Publisher
from events.reader import EventReader, log_end_offsets
from events.serde import Serde
from events.registry import BuiltinRegistry
from events.topics import TopicNames
from tests.fixtures import example_event

pytestmark = pytest.mark.stack


def test_every_schema_round_trips_through_the_broker(platform, catalog):
    async def go():
        await platform.ensure_topics()
        serde = await platform.serde()
        events = [example_event(catalog, name, n) for n, name in enumerate(catalog.names())]
        async with platform.publisher(serde) as pub:
            deliveries = await pub.publish_many(events)
        families = sorted({e.TOPIC_FAMILY for e in events})
        async with platform.reader(serde, families) as reader:
            records = await reader.read_to_end()
        return events, deliveries, records

    events, deliveries, records = asyncio.run(go())
    assert len(records) == len(events) == len(deliveries)
    assert all(r.error is None for r in records)
    back = {r.decoded.record["event_id"]: r for r in records}
    for event, d in zip(events, deliveries, strict=True):
        r = back[event.event_id]
        assert r.decoded.to_event() == event
        assert (r.topic, r.partition, r.offset) == (d.topic, d.partition, d.offset)
        assert r.key == event.key().encode()


def _readings(n, twins=7):
    now = datetime.now(UTC)
    return [SensorReading(occurred_at=now, source="t", twin_id=f"tw{i % twins}", sensor_id="s", quantity="q",
                          value=float(i), unit="u") for i in range(n)]


def test_publish_many_keeps_each_aggregates_order_and_confirms_every_event(platform):
    async def go():
        await platform.ensure_topics()
        serde = await platform.serde()
        events = _readings(3000)
        async with platform.publisher(serde) as pub:
            deliveries = await pub.publish_many(events)
            single = await pub.publish(_readings(1)[0].model_copy(update={"value": 1e9}))
        async with platform.reader(serde, ["readings"]) as reader:
            records = await reader.read_to_end()
        return events, deliveries, single, records

    events, deliveries, single, records = asyncio.run(go())
    assert len(records) == 3001
    assert len({(d.partition, d.offset) for d in deliveries}) == 3000  # every event has its own slot
    per_key = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        per_key[r.key].append(r.decoded.record["value"])
    for key, values in per_key.items():
        assert values == sorted(values), key
    assert single.offset == max(d.offset for d in deliveries if d.partition == single.partition) + 1


def test_publish_all_places_records_like_publish_records(platform):
    """The workers' path (no Delivery per record, runs of one key looked up once) puts every keyed
    record on its key's murmur2 partition (what every Kafka client chooses), in input order per
    partition, across two topics."""
    async def go():
        await platform.ensure_topics()
        serde = await platform.serde()
        readings, alerts = platform.topics.topic("readings"), platform.topics.topic("alerts")
        # runs of one key, keys interleaved, a second topic in between, and a keyless record
        keys = [f"tw{i // 5 % 9}/s".encode() for i in range(600)]
        records = [OutgoingRecord(alerts if i % 97 == 0 else readings, None if i == 300 else k,
                                  serde.encode_event(e), str(e.event_id))
                   for i, (k, e) in enumerate(zip(keys, _readings(600), strict=True))]
        async with platform.publisher(serde) as pub:
            await pub.publish_all(records)
        async with platform.reader(serde, ["readings", "alerts"]) as reader:
            back = await reader.read_to_end()
        c = AIOKafkaConsumer(bootstrap_servers=platform.endpoints().kafka)
        await c.start()
        try:
            await c.topics()
            parts = {t: sorted(c.partitions_for_topic(t)) for t in (readings, alerts)}
        finally:
            await c.stop()
        return records, back, parts

    records, back, parts = asyncio.run(go())
    murmur2 = DefaultPartitioner()
    where = {r.event_id: (r.topic, murmur2(r.key, parts[r.topic], parts[r.topic])) for r in records if r.key}
    mine = {r.event_id for r in records}
    first = {}
    for r in sorted(back, key=lambda r: (r.topic, r.partition, r.offset)):
        eid = str(r.decoded.record["event_id"]) if r.error is None else None
        if eid in mine:
            first.setdefault(eid, r)
    assert set(first) == mine  # every record is on the log
    assert len({r.partition for r in first.values() if r.topic == records[1].topic}) > 1
    for rec in records:
        got = first[rec.event_id]
        if rec.key is not None:
            assert (got.topic, got.partition) == where[rec.event_id], rec.event_id
    per_partition = defaultdict(list)  # publish_all's copies keep the input order on each partition
    for rec in records:
        got = first[rec.event_id]
        per_partition[(got.topic, got.partition)].append(got.offset)
    assert all(offs == sorted(offs) for offs in per_partition.values())


def test_log_end_is_found_despite_tansu_list_offsets(platform):
    """Tansu's ListOffsets(latest) says 1 after one batch of 500; the high watermark says 500."""
    async def go():
        await platform.ensure_topics()
        serde = await platform.serde()
        topic = platform.topics.topic("readings")
        async with platform.publisher(serde) as pub:
            deliveries = await pub.publish_many(_readings(500, twins=1))
        partition = deliveries[0].partition
        tp = TopicPartition(topic, partition)
        consumer = AIOKafkaConsumer(bootstrap_servers=platform.endpoints().kafka, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign([tp])
            ends = await log_end_offsets(consumer, [tp])
        finally:
            await consumer.stop()
        return ends[tp], deliveries[-1].offset

    end, last = asyncio.run(go())
    assert end == last + 1 == 500


def test_tail_from_end_sees_only_new_events(platform):
    async def go():
        await platform.ensure_topics()
        serde = await platform.serde()
        async with platform.publisher(serde) as pub:
            await pub.publish_many(_readings(50))
            async with platform.reader(serde, ["readings"], "end") as reader:
                fresh = _readings(5)
                await pub.publish_many(fresh)
                got = await reader.read(limit=5, idle_timeout_s=5)
        return fresh, got

    fresh, got = asyncio.run(go())
    assert sorted(str(r.decoded.record["event_id"]) for r in got) == sorted(str(e.event_id) for e in fresh)


def test_poison_on_the_topic_is_returned_not_raised(platform):
    async def go():
        await platform.ensure_topics()
        serde = await platform.serde()
        topic = platform.topics.topic("readings")
        producer = AIOKafkaProducer(bootstrap_servers=platform.endpoints().kafka)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"not avro at all", key=b"k")
            await producer.send_and_wait(topic, b"\x00\x00\x00\x00\x09xx", key=b"k")
            await producer.send_and_wait(topic, serde.encode_event(_readings(1)[0]), key=b"k")
        finally:
            await producer.stop()
        async with platform.reader(serde, ["readings"]) as reader:
            return await reader.read_to_end()

    records = asyncio.run(go())
    assert [r.error.kind if r.error else "ok" for r in records] == ["NOT_FRAMED", "UNKNOWN_SCHEMA", "ok"]


def test_unreachable_broker_is_a_clear_retriable_error(catalog):
    async def go():
        serde = Serde(catalog, BuiltinRegistry(catalog), TopicNames())
        await serde.prepare()
        pub = Publisher(bootstrap="127.0.0.1:9", serde=serde, topics=TopicNames(), request_timeout_ms=2000)
        await pub.start()

    with pytest.raises(PublishError) as e:
        asyncio.run(go())
    assert e.value.retriable and "cannot connect to Kafka" in str(e.value)
