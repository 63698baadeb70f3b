"""The durable embedded log: events and committed offsets survive `qi stack down` / `up`.

A stack of its own (durable storage, unlike the session's memory-only one).
Ports change across the restart; everything is found again through the run
directory's state, as `qi` commands do.
"""

import asyncio
import subprocess
import sys
import time
from collections import Counter

import pytest
import redis
from confluent_kafka import Consumer, TopicPartition

from qi.config import (
    ClickHouseSettings,
    KafkaSettings,
    LogSettings,
    MqttSettings,
    PostgresSettings,
    RedisSettings,
    SchemaRegistrySettings,
    Settings,
    StackSettings,
)
from qi.platform import Platform
from qi.stack import LocalStack
from tests.fixtures import example_event

pytestmark = pytest.mark.stack

N_EVENTS = 3000
GROUP = "durability-check"


def qi(run_dir, *args):
    env = {"PATH": "/usr/bin:/bin", "QI_STACK_RUN_DIR": str(run_dir), "QI_LOG_FORMAT": "json"}
    return subprocess.run([sys.executable, "-m", "qi", "stack", *args], env=env, capture_output=True, text=True,
                          timeout=180)


def platform_for(run_dir) -> Platform:
    """Endpoints unset: read from the stack's state file at each use, as after a restart."""
    return Platform(Settings(
        kafka=KafkaSettings(bootstrap=None, partitions=3), schema_registry=SchemaRegistrySettings(url=None),
        postgres=PostgresSettings(), clickhouse=ClickHouseSettings(), redis=RedisSettings(), mqtt=MqttSettings(),
        stack=StackSettings(run_dir=run_dir, log_storage="durable"), log=LogSettings(),
    ))


def read_log(platform: Platform) -> dict[tuple[str, int, int], str]:
    """(topic, partition, offset) -> event_id for every record of the readings topic."""
    async def go():
        serde = await platform.serde()
        async with platform.reader(serde, ["readings"]) as reader:
            return await reader.read_to_end()
    return {(r.topic, r.partition, r.offset): str(r.decoded.record["event_id"]) for r in asyncio.run(go())}


def projection(platform: Platform) -> Counter:
    """A read model derived from the log alone: readings per sensor key."""
    async def go():
        serde = await platform.serde()
        async with platform.reader(serde, ["readings"]) as reader:
            return Counter(r.key for r in await reader.read_to_end())
    return asyncio.run(go())


def group_consumer(platform: Platform) -> Consumer:
    return Consumer({"bootstrap.servers": platform.endpoints().kafka, "group.id": GROUP,
                     "auto.offset.reset": "earliest", "enable.auto.commit": False})


def test_events_and_committed_offsets_survive_down_and_up(tmp_path, catalog):
    run_dir = tmp_path / "durable"
    try:
        _check(run_dir, catalog)
    finally:
        LocalStack(run_dir).down(purge=True)


def _check(run_dir, catalog):
    assert qi(run_dir, "up").returncode == 0
    platform = platform_for(run_dir)
    topic = platform.topics.topic("readings")

    async def publish():
        serde = await platform.serde()
        events = [example_event(catalog, "SensorReading", n) for n in range(N_EVENTS)]
        async with platform.publisher(serde) as pub:
            return await pub.publish_many(events)

    deliveries = asyncio.run(publish())
    before = read_log(platform)
    assert len(before) == N_EVENTS
    assert {(d.topic, d.partition, d.offset): d.event_id for d in deliveries} == before
    model_before = projection(platform)

    # A consumer group reads part of the log and commits where it stopped.
    consumer = group_consumer(platform)
    tps = [TopicPartition(topic, p) for p in range(3)]
    consumer.assign([TopicPartition(topic, p, 0) for p in range(3)])
    half = [TopicPartition(topic, p, sum(1 for k in before if k[1] == p) // 2) for p in range(3)]
    consumer.commit(offsets=half, asynchronous=False)
    committed_before = {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=10)}
    consumer.close()
    assert committed_before == {tp.partition: tp.offset for tp in half}

    redis_client = redis.Redis.from_url(platform.endpoints().redis)
    redis_client.set("durability-probe", "kept")
    redis_client.close()

    down = qi(run_dir, "down")
    assert down.returncode == 0, down.stderr
    assert "data kept" in down.stdout
    up = qi(run_dir, "up")  # bench/log_restart.py measures how long this takes
    assert up.returncode == 0, up.stderr
    assert "topics: 9 (0 created)" in up.stdout

    after = read_log(platform)
    assert after == before  # every event, at its offset
    assert projection(platform) == model_before

    redis_client = redis.Redis.from_url(platform.endpoints().redis)
    assert redis_client.get("durability-probe") == b"kept"  # append-only file (decision 0071)
    redis_client.close()

    consumer = group_consumer(platform)
    assert {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=10)} == committed_before
    # the group resumes where it was: its first records are the ones at the committed offsets
    consumer.subscribe([topic])
    first: dict[int, int] = {}
    deadline = time.monotonic() + 60
    while len(first) < 3 and time.monotonic() < deadline:
        for m in consumer.consume(500, 1.0):
            if m.error() is None:
                first.setdefault(m.partition(), m.offset())
    consumer.close()
    assert first == committed_before
