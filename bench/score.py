"""End-to-end throughput and memory of the scoring worker against a bare-consumer floor.

1. Publish N SensorReadings (pre-encoded) to a fresh readings topic, spread over S sensors.
2. Floor, in this process: a bare aiokafka consumer (no group) ``getmany`` + fastavro decode of
   every one of those N readings (the same stripped-logical-type schema the worker decodes with).
3. Ours, in a child process: ``Platform.score_processor`` on ``Platform.batch_runner`` (exactly
   what ``qi worker score`` runs), timed from ``runner.run`` until the runner has had all N
   AnomalyScored acknowledged by Kafka; the child reports its peak RSS (``ru_maxrss``).
Steps 1 and 3 are repeated with 100 and with 10,000 sensors (memory must stay flat); the
throughput ratio is the 100-sensor run's (both runs are printed).

    python -m bench.score [--records 200000]

Uses the stack of QI_KAFKA_BOOTSTRAP / QI_REDIS_URL, else starts the local stack in .qi/bench.
"""

from __future__ import annotations

import os.path
import sys

# `python bench/score.py` puts bench/ first on sys.path, where bench/platform.py would shadow the
# standard library's `platform` (imported by uuid, attrs...): drop it, the repository root goes in below.
if sys.path and os.path.realpath(sys.path[0]) == os.path.dirname(os.path.realpath(__file__)):
    sys.path.pop(0)

import argparse
import asyncio
import io
import json
import os
import resource
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: E402
from fastavro import parse_schema, schemaless_reader  # noqa: E402

from bench._report import report  # noqa: E402
from events.models import SensorReading  # noqa: E402
from events.publisher import OutgoingRecord  # noqa: E402
from qi.config import Settings  # noqa: E402
from qi.platform import Platform  # noqa: E402
from qi.stack import LocalStack  # noqa: E402


def _strip(schema):  # noqa: ANN001, ANN202
    if isinstance(schema, dict):
        return {k: _strip(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [_strip(s) for s in schema]
    return schema


async def publish(platform: Platform, n: int, sensors: int) -> None:
    await platform.ensure_topics()
    serde = await platform.serde()
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    topic = platform.topics.topic("readings")
    out = []
    for i in range(n):
        s = i % sensors
        e = SensorReading(occurred_at=t0 + timedelta(seconds=60 * (i // sensors)), source="bench",
                          twin_id=f"tw-{s}", sensor_id="temp", quantity="temperature",
                          value=20.0 + (i * 7919 % 1000) / 500.0, unit="Cel")
        out.append(OutgoingRecord(topic, f"tw-{s}/temp".encode(), serde.encode_event(e), str(e.event_id)))
    async with platform.publisher(serde) as pub:
        for k in range(0, n, 20_000):
            await pub.publish_records(out[k:k + 20_000])


async def floor(platform: Platform, n: int) -> float:
    schema = parse_schema(_strip(json.loads((ROOT / "schemas" / "SensorReading.v1.avsc").read_text())))
    topic = platform.topics.topic("readings")
    c = AIOKafkaConsumer(bootstrap_servers=platform.endpoints().kafka, enable_auto_commit=False,
                         auto_offset_reset="earliest", max_partition_fetch_bytes=4 * 1024 * 1024,
                         fetch_max_bytes=32 * 1024 * 1024)
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or await _parts(c, topic))]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        got = 0
        t0 = time.perf_counter()
        while got < n:
            for msgs in (await c.getmany(timeout_ms=200, max_records=5000)).values():
                for m in msgs:
                    schemaless_reader(io.BytesIO(m.value[5:]), schema, None)
                got += len(msgs)
        return n / (time.perf_counter() - t0)
    finally:
        await c.stop()


async def _parts(c: AIOKafkaConsumer, topic: str) -> set[int]:
    await c._client.force_metadata_update()  # noqa: SLF001 - topic just created
    return c.partitions_for_topic(topic) or set()


async def child(n: int) -> None:
    """Run the scoring worker until N scores are acknowledged; print rate and peak RSS as JSON."""
    platform = Platform(Settings.from_env())
    serde = await platform.serde()
    runner = platform.batch_runner(platform.score_processor(serde), serde)
    scores = platform.topics.topic("scores")
    stop = asyncio.Event()
    t0 = time.perf_counter()
    task = asyncio.create_task(runner.run(stop))
    joined_at = first_at = None
    while runner.metrics.produced.get(scores, 0) < n:
        if joined_at is None and runner.health()["joined"]:
            joined_at = time.perf_counter() - t0
        if first_at is None and runner.metrics.produced.get(scores, 0):
            first_at = time.perf_counter() - t0
        if task.done():
            task.result()
            raise SystemExit("runner stopped early")
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - t0
    stop.set()
    await task
    print(json.dumps({"per_s": n / elapsed, "elapsed_s": elapsed, "joined_after_s": joined_at,
                      "first_score_after_s": first_at, "batches": runner.metrics.batches,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def run_child(env: dict[str, str], n: int) -> dict:
    p = subprocess.run([sys.executable, __file__, "--child", "--records", str(n)], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=1800)
    if p.returncode != 0:
        raise SystemExit(f"child failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


async def main(args: argparse.Namespace) -> None:
    stack = None
    env = dict(os.environ)
    if not env.get("QI_KAFKA_BOOTSTRAP"):
        stack = LocalStack(ROOT / ".qi" / "bench")
        urls = stack.up()
        env.update(QI_KAFKA_BOOTSTRAP=urls["kafka"], QI_REDIS_URL=urls["redis"])
    try:
        results = {}
        for sensors in (100, 10_000):
            run_id = uuid.uuid4().hex[:8]
            env.update(QI_KAFKA_TOPIC_PREFIX=f"bench-{run_id}.", QI_KAFKA_CLIENT_ID=f"bench-{run_id}",
                       QI_LOG_LEVEL="warning")
            os.environ.update(env)
            platform = Platform(Settings.from_env())
            await publish(platform, args.records, sensors)
            fl = await floor(platform, args.records)
            ours = run_child(env, args.records)
            results[sensors] = {"floor": fl, **ours}
            print(f"{sensors} sensors: floor {fl:,.0f}/s, ours {ours['per_s']:,.0f}/s, "
                  f"peak RSS {ours['peak_rss_mb']:.0f} MB", file=sys.stderr)
    finally:
        if stack is not None:
            stack.down(purge=True)
    r100, r10k = results[100], results[10_000]
    row = {"floor_per_s": round(r100["floor"]), "ours_per_s": round(r100["per_s"]),
           "ratio": round(r100["per_s"] / r100["floor"], 3),
           "peak_rss_mb_100_sensors": round(r100["peak_rss_mb"], 1),
           "peak_rss_mb_10000_sensors": round(r10k["peak_rss_mb"], 1)}
    # The same run without the consumer-group join (on Tansu the first join takes half the session
    # timeout, ~5 s at the default 10 s; the floor joins no group): for where the time goes.
    after_join = args.records / (r100["elapsed_s"] - r100["joined_after_s"])
    row.update(ours_after_join_per_s=round(after_join), ratio_after_join=round(after_join / r100["floor"], 3),
               joined_after_s=round(r100["joined_after_s"], 2))
    path = report("score", [row], params={"records": args.records, "runs": {str(k): v for k, v in results.items()}})
    data = json.loads(path.read_text())
    data.update(row)  # the fields at the top level too
    path.write_text(json.dumps(data, indent=2))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    asyncio.run(child(a.records) if a.child else main(a))
