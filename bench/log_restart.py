"""How long the embedded stack takes to go down and come back with a log of 1,000,000 events.

For each log storage (``durable``: Tansu's s3:// engine on the local
SeaweedFS; ``memory``: the floor, same processes but nothing to keep) in a
stack of its own under .qi/bench-restart-<storage>:

1. ``up``, create the topics, publish ``--events`` SensorReadings (Avro,
   Confluent-framed) to ``qi.readings.v1`` with confluent-kafka, noting the
   last offset of every partition from the delivery reports;
2. ``log_restart_s`` = ``down`` + ``up`` + until the last record of every
   partition can be fetched again at its offset (for ``memory`` there is no
   such record: the floor stops once the broker answers metadata).

    python -m bench.log_restart [--events 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402

from bench._report import report  # noqa: E402
from events.admin import ensure_topics  # noqa: E402
from events.registry import BuiltinRegistry  # noqa: E402
from events.schemas import SchemaCatalog  # noqa: E402
from events.serde import Serde  # noqa: E402
from events.topics import TopicNames  # noqa: E402
from qi.stack import LocalStack  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 6


def publish(bootstrap: str, serde: Serde, topic: str, n: int) -> tuple[dict[int, int], float]:
    """Publish n readings; returns the last offset per partition and the events/s."""
    last: dict[int, int] = {}

    def delivered(err, msg) -> None:  # noqa: ANN001
        if err is not None:
            raise RuntimeError(f"delivery failed: {err}")
        last[msg.partition()] = max(last.get(msg.partition(), -1), msg.offset())

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.num.messages": 10000,
                         "queue.buffering.max.messages": 500000, "acks": "all", "compression.type": "none"})
    now = datetime.now(UTC)
    started = time.perf_counter()
    for i in range(n):
        sensor = f"sensor-{i % 500}"
        value = serde.encode("SensorReading", {
            "event_id": uuid.uuid4(), "event_type": "SensorReading", "occurred_at": now, "recorded_at": now,
            "source": "bench", "correlation_id": None, "causation_id": None,
            "twin_id": f"twin-{i % 50}", "sensor_id": sensor, "quantity": "temperature",
            "value": 20.0 + (i % 1000) / 100, "unit": "degC",
        })
        while True:
            try:
                producer.produce(topic, key=sensor.encode(), value=value, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10000 == 0:
            producer.poll(0)
    if producer.flush(120) != 0:
        raise RuntimeError("not every record was confirmed")
    return last, n / (time.perf_counter() - started)


def last_records_readable(bootstrap: str, topic: str, last: dict[int, int], timeout_s: float = 120) -> None:
    """Fetch the record at each partition's last offset; raise if any is missing."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex[:6]}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, off) for p, off in last.items()])
    seen: dict[int, int] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(seen) < len(last) and time.monotonic() < deadline:
            for m in consumer.consume(len(last), 0.5):
                if m.error() is None:
                    seen.setdefault(m.partition(), m.offset())
    finally:
        consumer.close()
    if seen != last:
        raise RuntimeError(f"after restart the last records are not where they were: {seen} != {last}")


def run(storage: str, n: int) -> dict:
    run_dir = ROOT / ".qi" / f"bench-restart-{storage}"
    stack = LocalStack(run_dir, log_storage=storage, start_timeout_s=120)
    stack.down(purge=True)
    try:
        bootstrap = stack.up()["kafka"]
        cat = SchemaCatalog.load()
        topics = TopicNames("")
        asyncio.run(ensure_topics(bootstrap, {topics.topic("readings"): PARTITIONS}))
        serde = Serde(cat, BuiltinRegistry(cat), topics)
        asyncio.run(serde.prepare())
        last, rate = publish(bootstrap, serde, topics.topic("readings"), n)
        data_mb = sum(f.stat().st_size for f in stack.data_dir.rglob("*") if f.is_file()) / 1e6

        t0 = time.perf_counter()
        stack.down()
        t1 = time.perf_counter()
        bootstrap = stack.up()["kafka"]
        t2 = time.perf_counter()
        if storage == "durable":
            last_records_readable(bootstrap, topics.topic("readings"), last)
        t3 = time.perf_counter()
        return {"storage": storage if storage == "durable" else "memory (floor)", "events": sum(last.values()) + len(last),
                "publish_events_per_s": rate, "data_dir_mb": data_mb, "down_s": t1 - t0, "up_s": t2 - t1,
                "log_restart_s": t3 - t0}
    finally:
        stack.down(purge=True)
        shutil.rmtree(run_dir, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    args = ap.parse_args()
    floor = run("memory", args.events)
    durable = run("durable", args.events)
    for row in (durable, floor):
        row["vs floor"] = row["log_restart_s"] / floor["log_restart_s"]
    report("log_restart", [durable, floor], params={**vars(args), "partitions": PARTITIONS, "goal_log_restart_s": 10})


if __name__ == "__main__":
    main()
