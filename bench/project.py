"""Projection throughput per sink against a floor measured in the same run.

For each sink the same mixed events (readings, scores, alerts, twins, certificates,
validations; ~85% firehose) are published once to fresh topics, then consumed by a
batch runner in a fresh consumer group:

* floor: a processor that consumes and decodes (``plain``) the same events and
  writes nothing;
* the sink's projector, writing every event.

Rate = events / (time from the first batch to the last event processed); group
joins are excluded from both. Rounds alternate floor and sink; the best of each
is reported. Writes ``bench/results/project.json`` with one object per sink
(``events_per_s``, ``floor_per_s``, ``ratio``). Uses the stack of
QI_KAFKA_BOOTSTRAP, else starts the local stack in .qi/bench; the embedded
ClickHouse engine lives in a temporary directory.

Lag: readings are published at a steady ``--lag-rate`` (5,000/s) in chunks every
50 ms while the projector runs; a thread polls ``count()`` of the readings table
every 10 ms; a chunk's lag is from the start of its publish call to the first
poll that sees all of it. ``lag_p50_ms`` / ``lag_p99_ms`` are over the chunks.

    python bench/project.py [--events 100000] [--rounds 2] [--lag-rate 5000] [--lag-seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._report import RESULTS, machine, report  # noqa: E402
from events.reader import ConsumedRecord  # noqa: E402
from projections.clickhouse.projector import ClickHouseProjector  # noqa: E402
from projections.clickhouse.warehouse import ClickHouseWarehouse  # noqa: E402
from qi.config import (  # noqa: E402
    ClickHouseSettings, KafkaSettings, LogSettings, MqttSettings, PostgresSettings, RedisSettings,
    SchemaRegistrySettings, Settings, StackSettings,
)
from qi.platform import Platform  # noqa: E402
from qi.stack import LocalStack  # noqa: E402
from streams.processor import BatchResult, Processor  # noqa: E402
from projections.framework import ProjectionProcessor  # noqa: E402
from tests.projections.clickhouse.world import mixed_events  # noqa: E402


class _Clock:
    """Counts processed events; first batch start to last batch end."""

    def __init__(self, expected: int) -> None:
        self.expected, self.seen = expected, 0
        self.t0: float | None = None
        self.t1 = 0.0
        self.done = asyncio.Event()

    def before(self) -> None:
        if self.t0 is None:
            self.t0 = time.perf_counter()

    def after(self, n: int) -> None:
        self.seen += n
        self.t1 = time.perf_counter()
        if self.seen >= self.expected:
            self.done.set()

    @property
    def rate(self) -> float:
        return self.seen / (self.t1 - (self.t0 or self.t1) or 1e-9)


class FloorProcessor(Processor):
    name = "bench-floor"
    families = tuple(ClickHouseProjector.families)
    decode = "plain"

    def __init__(self, clock: _Clock) -> None:
        self.clock = clock

    async def process(self, records: list[ConsumedRecord]) -> BatchResult:
        self.clock.before()
        self.clock.after(len(records))
        return BatchResult()


class TimedClickHouse(ClickHouseProjector):
    name = "bench-clickhouse"

    def __init__(self, warehouse: ClickHouseWarehouse, clock: _Clock) -> None:
        super().__init__(warehouse)
        self.clock = clock

    async def process(self, records: list[ConsumedRecord]) -> BatchResult:
        self.clock.before()
        result = await super().process(records)
        if self.clock.seen + len(records) >= self.clock.expected:
            await self.drain()  # the clock stops once the last rows are in the warehouse
        self.clock.after(len(records))
        return result


def settings(urls: dict, prefix: str, client_id: str, chdb: str) -> Settings:
    pg = PostgresSettings(dsn=urls["postgres"]) if urls.get("postgres") else PostgresSettings()
    rd = RedisSettings(url=urls["redis"]) if urls.get("redis") else RedisSettings()
    return Settings(kafka=KafkaSettings(bootstrap=urls["kafka"], topic_prefix=prefix, client_id=client_id),
                    schema_registry=SchemaRegistrySettings(), postgres=pg,
                    clickhouse=ClickHouseSettings(dsn=chdb), redis=rd, mqtt=MqttSettings(),
                    stack=StackSettings(), log=LogSettings(level="warning"))


async def run_one(platform: Platform, processor: Processor, clock: _Clock) -> float:
    serde = await platform.serde()
    runner = platform.batch_runner(processor, serde)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await asyncio.wait_for(clock.done.wait(), 600)
    finally:
        stop.set()
        await task
    return clock.rate


async def measure_lag(urls: dict, chdb: str, *, rate: int, seconds: int) -> tuple[float, float]:
    from events.models import SensorReading
    from projections.clickhouse.warehouse import _client

    prefix = f"bench-lag-{uuid.uuid4().hex[:8]}."
    platform = Platform(settings(urls, prefix, "bench-lag", chdb))
    await platform.ensure_topics()
    serde = await platform.serde()
    wh = ClickHouseWarehouse(chdb, "bench_lag", projection="bench-lag")
    runner = platform.batch_runner(ClickHouseProjector(wh), serde)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    chunk = max(rate // 20, 1)
    n = rate * seconds
    t0 = _now()
    pub = platform.publisher(serde)
    records = [pub.record_for(SensorReading(occurred_at=t0, source="bench", twin_id=f"tw-{i % 500}",
                                            sensor_id="s1", quantity="pressure", value=float(i), unit="kPa"))
               for i in range(n)]
    seen: list[tuple[float, int]] = []
    polling = threading.Event()

    def poll() -> None:
        client = _client(chdb)
        try:
            while not polling.is_set():
                seen.append((time.perf_counter(), client.query("SELECT count() FROM bench_lag.readings").result_rows[0][0]))
                time.sleep(0.01)
        finally:
            client.close()

    try:
        while not runner.health()["joined"]:
            await asyncio.sleep(0.05)
        await pub.start()
        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        sent: list[tuple[float, int]] = []
        start = time.perf_counter()
        for i in range(0, n, chunk):
            target = start + (i // chunk) * 0.05
            await asyncio.sleep(max(0.0, target - time.perf_counter()))
            t = time.perf_counter()
            await pub.publish_records(records[i:i + chunk])
            sent.append((t, i + len(records[i:i + chunk])))
        deadline = time.perf_counter() + 120
        while (not seen or seen[-1][1] < n) and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        polling.set()
        poller.join()
    finally:
        await pub.close()
        stop.set()
        await task
    lags = []
    for t, cum in sent:
        visible = next((ts for ts, c in seen if ts >= t and c >= cum), None)
        if visible is None:
            raise RuntimeError(f"{cum} readings never became visible")
        lags.append((visible - t) * 1000)
    lags.sort()
    return lags[len(lags) // 2], lags[min(len(lags) - 1, int(len(lags) * 0.99))]


class TimedProjection(ProjectionProcessor):
    """A framework projection (Postgres registry, Redis lookups) that stops the clock when done."""

    def __init__(self, projection, sink, clock: _Clock, name: str) -> None:
        super().__init__(projection, sink, name=name)
        self.clock = clock

    async def process(self, records: list[ConsumedRecord]) -> BatchResult:
        self.clock.before()
        result = await super().process(records)
        if self.clock.seen + len(records) >= self.clock.expected:
            await self.drain()  # the clock stops once the last batch is in the store
        self.clock.after(len(records))
        return result


#: framework sinks measured here: sink kind -> the projection it serves
FRAMEWORK_SINKS = {"postgres": "registry", "redis": "lookups"}


async def measure_framework(urls: dict, chdb: str, kinds: list[str], *, events: int, rounds: int) -> dict:
    """events/s of each framework sink and of the floor reading the same topic families, same run.

    The events are ``tests.projections.world``: twins, issuer keys, certificates, validations,
    30% readings+scores; each sink reads the families of its projection, and so does its floor."""
    from projections.registry import PROJECTIONS
    from tests.projections.world import world

    prefix = f"bench-fw-{uuid.uuid4().hex[:8]}."
    evs = world(events, seed=3, twins=500, firehose=0.3)
    base = Platform(settings(urls, prefix, "bench-fw", chdb))
    await base.ensure_topics()
    serde = await base.serde()
    async with base.publisher(serde) as pub:
        await pub.publish_many(evs)
    out = {}
    for kind in kinds:
        projection = PROJECTIONS[FRAMEWORK_SINKS[kind]]
        n = sum(e.TOPIC_FAMILY in projection.families for e in evs)
        best = {"floor": 0.0, "sink": 0.0}
        for r in range(rounds):
            p = Platform(settings(urls, prefix, f"bench-fw-{kind}-{r}-f", chdb))
            clock = _Clock(n)
            floor = FloorProcessor(clock)
            floor.families = projection.families  # the same topics as the sink reads
            best["floor"] = max(best["floor"], await run_one(p, floor, clock))
            p = Platform(settings(urls, prefix, f"bench-fw-{kind}-{r}-s", chdb))
            sink = p.projection_sink(projection, kind, generation=f"bench{r}")
            clock = _Clock(n)
            proc = TimedProjection(projection, sink, clock, name=f"bench-{kind}-{r}")
            try:
                best["sink"] = max(best["sink"], await run_one(p, proc, clock))
            finally:
                cleanup = p.projection_sink(projection, kind, generation=f"bench{r}")
                await cleanup.drop()
                await cleanup.close()
        out[kind] = {"events_per_s": round(best["sink"]), "floor_per_s": round(best["floor"]),
                     "ratio": round(best["sink"] / best["floor"], 3), "events": n}
    return out


def _now():
    from datetime import UTC, datetime

    return datetime.now(UTC)


async def main(args) -> None:
    from qi.logging import configure_logging

    configure_logging(LogSettings(level="warning"))
    bootstrap = os.environ.get("QI_KAFKA_BOOTSTRAP")
    stack = None
    urls = {"kafka": bootstrap}
    if not bootstrap:
        stack = LocalStack(Path(__file__).resolve().parents[1] / ".qi" / "bench")
        urls = stack.up()
    tmp = tempfile.TemporaryDirectory(prefix="qi-bench-ch-")
    chdb = f"chdb://{tmp.name}"
    try:
        kinds = [k.strip() for k in args.sinks.split(",") if k.strip()]
        framework = await measure_framework(urls, chdb, [k for k in kinds if k in FRAMEWORK_SINKS],
                                            events=args.events, rounds=args.rounds)
        rows = [{"sink": k, "events/s": v["events_per_s"], "floor/s": v["floor_per_s"], "ratio": v["ratio"],
                 "lag p50 ms": "-", "lag p99 ms": "-"} for k, v in framework.items()]
        if "clickhouse" not in kinds:
            report("project", rows, params={"events": args.events, "rounds": args.rounds})
            path = RESULTS / "project.json"
            out = json.loads(path.read_text())
            out.update({k: {f: v[f] for f in ("events_per_s", "floor_per_s", "ratio")} for k, v in framework.items()})
            path.write_text(json.dumps(out, indent=2))
            return
        prefix = f"bench-{uuid.uuid4().hex[:8]}."
        events = mixed_events(args.events, seed=3, twins=200)
        base = Platform(settings(urls, prefix, "bench", chdb))
        await base.ensure_topics()
        serde = await base.serde()
        async with base.publisher(serde) as pub:
            await pub.publish_many(events)
        n = len(events)
        best = {"floor": 0.0, "clickhouse": 0.0}
        for r in range(args.rounds):
            p = Platform(settings(urls, prefix, f"bench-{r}-f", chdb))
            clock = _Clock(n)
            best["floor"] = max(best["floor"], await run_one(p, FloorProcessor(clock), clock))
            p = Platform(settings(urls, prefix, f"bench-{r}-c", chdb))
            wh = ClickHouseWarehouse(chdb, f"bench_{r}", projection=f"bench-{r}")
            clock = _Clock(n)
            best["clickhouse"] = max(best["clickhouse"], await run_one(p, TimedClickHouse(wh, clock), clock))
        p50, p99 = await measure_lag(urls, chdb, rate=args.lag_rate, seconds=args.lag_seconds)
        ch = {"events_per_s": round(best["clickhouse"]), "floor_per_s": round(best["floor"]),
              "ratio": round(best["clickhouse"] / best["floor"], 3)}
        rows += [{"sink": "clickhouse", "events/s": ch["events_per_s"], "floor/s": ch["floor_per_s"],
                  "ratio": ch["ratio"], "lag p50 ms": round(p50, 1), "lag p99 ms": round(p99, 1)}]
        report("project", rows, params={"events": n, "rounds": args.rounds, "lag_rate": args.lag_rate,
                                        "lag_seconds": args.lag_seconds})
        path = RESULTS / "project.json"
        out = json.loads(path.read_text())
        out.update({k: {f: v[f] for f in ("events_per_s", "floor_per_s", "ratio")} for k, v in framework.items()})
        out.update({"clickhouse": ch, "lag_p50_ms": round(p50, 1), "lag_p99_ms": round(p99, 1),
                    "lag_measured_on": "clickhouse", "machine": machine()})
        path.write_text(json.dumps(out, indent=2))
    finally:
        tmp.cleanup()
        if stack is not None:
            stack.down()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--lag-rate", type=int, default=5000, help="events/s published while measuring lag")
    ap.add_argument("--lag-seconds", type=int, default=10)
    ap.add_argument("--sinks", default="postgres,redis,clickhouse", help="comma-separated sinks to measure")
    asyncio.run(main(ap.parse_args()))
