"""Publish throughput to the local broker: events.publisher vs bare aiokafka.

Every case sends the same SensorReading bytes (pre-encoded) to a fresh topic
and waits for every confirmation:

* floor ``aiokafka send()``: one ``send()`` per record, then wait for all
  futures (how most aiokafka code publishes).
* floor ``aiokafka send_batch()``: hand-built record batches per partition.
* ``Publisher.publish_records``: our batching path on the same bytes.
* ``Publisher.publish_many``: typed events in, so it also pays pydantic
  ``model_dump`` and Avro encoding (reported against the same floor).

Rounds alternate the cases; the best round of each is reported. Uses the
stack of QI_KAFKA_BOOTSTRAP, else starts the local stack in .qi/bench.

    python -m bench.publish [--records 50000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiokafka import AIOKafkaProducer  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402
from aiokafka.partitioner import DefaultPartitioner  # noqa: E402

from bench._report import report  # noqa: E402
from events.publisher import OutgoingRecord, Publisher  # noqa: E402
from events.registry import BuiltinRegistry  # noqa: E402
from events.schemas import SchemaCatalog  # noqa: E402
from events.serde import Serde  # noqa: E402
from events.topics import TopicNames  # noqa: E402
from qi.samples import sample_events  # noqa: E402
from qi.stack import LocalStack  # noqa: E402

PARTITIONS = 6


async def fresh_topic(bootstrap: str, family_prefix: str) -> TopicNames:
    topics = TopicNames(f"bench-{uuid.uuid4().hex[:8]}-{family_prefix}.")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topics.topic("readings"), PARTITIONS, 1)])
    await admin.close()
    return topics


async def floor_send(bootstrap, topic, pairs):
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=1_000_000)
    await p.start()
    try:
        t = time.perf_counter()
        futs = [await p.send(topic, v, key=k) for k, v in pairs]
        await asyncio.gather(*futs)
        return len(pairs) / (time.perf_counter() - t)
    finally:
        await p.stop()


async def floor_batches(bootstrap, topic, pairs):
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_batch_size=1_000_000)
    await p.start()
    try:
        parts = sorted(await p.partitions_for(topic))
        part = DefaultPartitioner()
        t = time.perf_counter()
        by_part: dict[int, list] = {}
        for k, v in pairs:
            by_part.setdefault(part(k, parts, parts), []).append((k, v))

        async def one(pn, items):
            futs, b = [], p.create_batch()
            for k, v in items:
                if b.append(key=k, value=v, timestamp=None) is None:
                    futs.append(await p.send_batch(b, topic, partition=pn))
                    b = p.create_batch()
                    b.append(key=k, value=v, timestamp=None)
            futs.append(await p.send_batch(b, topic, partition=pn))
            await asyncio.gather(*futs)

        await asyncio.gather(*(one(pn, items) for pn, items in by_part.items()))
        return len(pairs) / (time.perf_counter() - t)
    finally:
        await p.stop()


async def ours(bootstrap, serde, topics, records=None, events=None):
    async with Publisher(bootstrap=bootstrap, serde=serde, topics=topics) as pub:
        t = time.perf_counter()
        if events is not None:
            await pub.publish_many(events)
        else:
            await pub.publish_records(records)
        n = len(events if events is not None else records)
        return n / (time.perf_counter() - t)


async def main(args) -> None:
    bootstrap = os.environ.get("QI_KAFKA_BOOTSTRAP")
    stack = None
    if not bootstrap:
        stack = LocalStack(Path(__file__).resolve().parents[1] / ".qi" / "bench")
        bootstrap = stack.up()["kafka"]
    try:
        cat = SchemaCatalog.load()
        events = [e for e in sample_events(readings_per_sensor=args.records // 4 + 1) if e.event_type == "SensorReading"]
        events = events[: args.records]
        best = {"aiokafka send()": 0.0, "aiokafka send_batch()": 0.0, "publish_records": 0.0, "publish_many": 0.0}
        for _ in range(args.rounds):
            topics = await fresh_topic(bootstrap, "f")
            serde = Serde(cat, BuiltinRegistry(cat), topics)
            await serde.prepare()
            topic = topics.topic("readings")
            pairs = [(e.key().encode(), serde.encode_event(e)) for e in events]
            records = [OutgoingRecord(topic, k, v) for k, v in pairs]
            best["aiokafka send()"] = max(best["aiokafka send()"], await floor_send(bootstrap, topic, pairs))
            t2 = await fresh_topic(bootstrap, "b")
            best["aiokafka send_batch()"] = max(best["aiokafka send_batch()"],
                                                await floor_batches(bootstrap, t2.topic("readings"), pairs))
            t3 = await fresh_topic(bootstrap, "o")
            s3 = Serde(cat, BuiltinRegistry(cat), t3)
            await s3.prepare()
            recs3 = [OutgoingRecord(t3.topic("readings"), r.key, r.value) for r in records]
            best["publish_records"] = max(best["publish_records"], await ours(bootstrap, s3, t3, records=recs3))
            t4 = await fresh_topic(bootstrap, "m")
            s4 = Serde(cat, BuiltinRegistry(cat), t4)
            await s4.prepare()
            best["publish_many"] = max(best["publish_many"], await ours(bootstrap, s4, t4, events=events))
        floor = best["aiokafka send()"]
        rows = [{"path": k, "events/s": v, "vs aiokafka send()": v / floor,
                 "vs aiokafka send_batch()": v / best["aiokafka send_batch()"]} for k, v in best.items()]
        report("publish", rows, params={**vars(args), "partitions": PARTITIONS, "bytes_per_event": len(pairs[0][1])})
    finally:
        if stack is not None:
            stack.down(purge=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=50000)
    ap.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(ap.parse_args()))
