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

Lag, per sink, one sink at a time: events the sink's projection reads (readings for
ClickHouse and Redis, twin attribute changes for the Postgres registry) are published
at a steady ``--lag-rate`` (5,000/s) in chunks every 50 ms while its projector runs;
a poller checks every 10 ms what is visible (ClickHouse: ``count()`` of the readings
table; Postgres/Redis: the positions the sink stores with the rows); a chunk's lag
is from the start of its publish call to the first poll that sees all of it.
Each sink's object has ``lag_p50_ms`` / ``lag_p99_ms`` over its chunks, and
``lag_stages_ms``: p50/p99 of each stage of a chunk (publish: call to acknowledged;
fetch: to the runner handing it, decoded, to the projector; wait: to the write
covering it starting, i.e. the ClickHouse buffer or the previous apply in flight;
write: the insert / ``apply``; see: to the poll seeing it); the top-level
``lag_p50_ms`` / ``lag_p99_ms`` are the worst sink's. ``--lag-only`` skips the
throughput runs and writes ``bench/results/project-lag.json``.

    python -m bench.project [--sinks postgres,redis,clickhouse] [--events 100000] [--framework-events 40000]
                            [--rounds 2] [--lag-rate 5000] [--lag-seconds 10] [--lag-only]
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/platform.py is named like the stdlib's `platform`: this directory must not shadow it on sys.path.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import json
import os
import tempfile
import threading
import time
import uuid

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


class _Stages:
    """Where a lag run's chunks spend their time: cumulative positions per stage event.

    ``handed``: the runner called ``process`` with records up to these positions (fetched and
    decoded); ``write``: a sink write (ClickHouse insert, framework ``apply``) covering them started
    / ended. A chunk reaches a stage at the first event whose cumulative positions cover it."""

    def __init__(self) -> None:
        self.events: dict[str, list[tuple[float, dict]]] = {"handed": [], "write_start": [], "write_end": []}
        self._cum: dict[str, dict] = {k: {} for k in self.events}

    def mark(self, stage: str, positions: dict) -> None:
        cum = dict(self._cum[stage])
        for tp, end in positions.items():
            if end > cum.get(tp, -1):
                cum[tp] = end
        self._cum[stage] = cum
        self.events[stage].append((time.perf_counter(), cum))

    def reached(self, stage: str, needs: dict, after: float) -> float | None:
        return next((t for t, cum in self.events[stage]
                     if t >= after and all(cum.get(tp, -1) >= end for tp, end in needs.items())), None)


def _pct(values: list[float]) -> tuple[float, float]:
    values = sorted(values)
    return values[len(values) // 2], values[min(len(values) - 1, int(len(values) * 0.99))]


def _breakdown(stages: _Stages, chunks: list[tuple[float, float, dict, float]]) -> dict:
    """p50/p99 ms of each stage over the chunks: publish (call to acknowledged), fetch (acknowledged
    to handed to the processor, decoded), wait (handed to its write starting: the ClickHouse buffer,
    the previous apply in flight), write (the insert / apply), see (write done to the poll seeing it)."""
    per: dict[str, list[float]] = {k: [] for k in ("publish", "fetch", "wait", "write", "see")}
    for t, acked, needs, visible in chunks:
        handed = stages.reached("handed", needs, t)
        w0 = stages.reached("write_start", needs, t)
        w1 = stages.reached("write_end", needs, t)
        if None in (handed, w0, w1):
            continue
        per["publish"].append(acked - t)
        per["fetch"].append(handed - acked)
        per["wait"].append(w0 - handed)
        per["write"].append(w1 - w0)
        per["see"].append(visible - w1)
    return {k: [round(x * 1000, 1) for x in _pct(v)] for k, v in per.items() if v}


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


def _lag_events(kind: str, n: int, t0) -> tuple[list, list]:
    """(set-up events, steady events) of a lag run: events the sink's projection reads."""
    from events.models import SensorReading, TwinAttributesChanged, TwinRegistered

    if kind == "postgres":  # the registry reads no readings: attribute changes of 500 twins
        setup = [TwinRegistered(occurred_at=t0, source="bench", aggregate_version=1, twin_id=f"tw-{t}", kind="gauge",
                                name=f"Gauge {t}", owner="o") for t in range(500)]
        steady = [TwinAttributesChanged(occurred_at=t0, source="bench", aggregate_version=2 + i // 500,
                                        twin_id=f"tw-{i % 500}", changed={"a": str(i)}) for i in range(n)]
        return setup, steady
    return [], [SensorReading(occurred_at=t0, source="bench", twin_id=f"tw-{i % 500}", sensor_id="s1",
                              quantity="pressure", value=float(i), unit="kPa") for i in range(n)]


async def measure_lag(urls: dict, chdb: str, kind: str, *, rate: int, seconds: int) -> tuple[float, float, dict]:
    """Lag from publish to visible of one sink at a steady ``rate``: (p50 ms, p99 ms) over the chunks,
    and the per-stage breakdown (``_breakdown``).

    Visible: ClickHouse, ``count()`` of the readings table covers the chunk; Postgres and Redis, the
    sink's stored positions (written in the same transaction as the rows, resp. by the batch's last
    script call, after its rows) cover it."""
    from projections.clickhouse.warehouse import _client
    from projections.registry import PROJECTIONS

    prefix = f"bench-lag-{kind}-{uuid.uuid4().hex[:8]}."
    platform = Platform(settings(urls, prefix, f"bench-lag-{kind}", chdb))
    await platform.ensure_topics()
    serde = await platform.serde()
    n = rate * seconds
    setup, steady = _lag_events(kind, n, _now())
    pub = platform.publisher(serde)
    records = [pub.record_for(e) for e in steady]
    topic = platform.topics.topic(steady[0].TOPIC_FAMILY)
    seen: list[tuple[float, int]] = []
    polling = threading.Event()
    reader = None
    stages = _Stages()
    if kind == "clickhouse":
        wh = ClickHouseWarehouse(chdb, "bench_lag", projection="bench-lag")
        processor: Processor = _staged(ClickHouseProjector, stages)(wh)
        write = wh.write

        def timed_write(batch):
            stages.mark("write_start", batch.positions)
            rows = write(batch)
            stages.mark("write_end", batch.positions)
            return rows
        wh.write = timed_write  # type: ignore[method-assign]  # instrumentation: stage timestamps

        def poll() -> None:
            client = _client(chdb)
            try:
                while not polling.is_set():
                    seen.append((time.perf_counter(),
                                 client.query("SELECT count() FROM bench_lag.readings").result_rows[0][0]))
                    time.sleep(0.01)
            finally:
                client.close()
    else:
        projection = PROJECTIONS[FRAMEWORK_SINKS[kind]]
        sink = platform.projection_sink(projection, kind, generation="lag")
        apply = sink.apply

        async def timed_apply(changes, positions):
            stages.mark("write_start", positions)
            await apply(changes, positions)
            stages.mark("write_end", positions)
        sink.apply = timed_apply  # type: ignore[method-assign]  # instrumentation: stage timestamps
        processor = _staged(ProjectionProcessor, stages)(projection, sink, name=f"bench-lag-{kind}")
        reader = platform.projection_sink(projection, kind, generation="lag")
        base = len(setup)

        async def poll_async() -> None:
            while not polling.is_set():
                at = await reader.positions()
                seen.append((time.perf_counter(), sum(o for (t, _), o in at.items() if t == topic) - base * (
                    kind == "postgres")))
                await asyncio.sleep(0.01)

    runner = platform.batch_runner(processor, serde)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    chunk = max(rate // 20, 1)
    poller = None
    try:
        while not runner.health()["joined"]:
            await asyncio.sleep(0.05)
        await pub.start()
        if setup:
            await pub.publish_many(setup)
            while reader is not None and sum((await reader.positions()).values()) < len(setup):
                await asyncio.sleep(0.05)
        if kind == "clickhouse":
            poller = threading.Thread(target=poll, daemon=True)
            poller.start()
        else:
            poller = asyncio.create_task(poll_async())
        sent: list[tuple[float, int, float, dict]] = []
        start = time.perf_counter()
        for i in range(0, n, chunk):
            target = start + (i // chunk) * 0.05
            await asyncio.sleep(max(0.0, target - time.perf_counter()))
            t = time.perf_counter()
            deliveries = await pub.publish_records(records[i:i + chunk])
            needs: dict = {}
            for d in deliveries:
                needs[(d.topic, d.partition)] = max(needs.get((d.topic, d.partition), 0), d.offset + 1)
            sent.append((t, i + len(records[i:i + chunk]), time.perf_counter(), needs))
        deadline = time.perf_counter() + 120
        while (not seen or seen[-1][1] < n) and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
    finally:
        polling.set()
        if isinstance(poller, threading.Thread):
            poller.join()
        elif poller is not None:
            await poller
        await pub.close()
        stop.set()
        await task
        if reader is not None:
            await reader.drop()
            await reader.close()
    lags, chunks = [], []
    for t, cum, acked, needs in sent:
        visible = next((ts for ts, c in seen if ts >= t and c >= cum), None)
        if visible is None:
            raise RuntimeError(f"{kind}: {cum} events never became visible")
        lags.append((visible - t) * 1000)
        chunks.append((t, acked, needs, visible))
    p50, p99 = _pct(lags)
    return p50, p99, _breakdown(stages, chunks)


def _staged(cls, stages: _Stages):
    """``cls`` (a projector) marking when the runner hands it each fetch."""
    from projections.framework import next_positions

    class Staged(cls):
        async def process(self, records):
            stages.mark("handed", next_positions(records))
            return await super().process(records)
    Staged.__name__ = f"Staged{cls.__name__}"
    return Staged


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


async def measure_clickhouse(urls: dict, chdb: str, *, events: int, rounds: int) -> dict:
    """events/s of the warehouse projector and of the floor on the same mixed events, same run."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    evs = mixed_events(events, seed=3, twins=200)
    base = Platform(settings(urls, prefix, "bench", chdb))
    await base.ensure_topics()
    serde = await base.serde()
    async with base.publisher(serde) as pub:
        await pub.publish_many(evs)
    n = len(evs)
    best = {"floor": 0.0, "clickhouse": 0.0}
    for r in range(rounds):
        p = Platform(settings(urls, prefix, f"bench-{r}-f", chdb))
        clock = _Clock(n)
        best["floor"] = max(best["floor"], await run_one(p, FloorProcessor(clock), clock))
        p = Platform(settings(urls, prefix, f"bench-{r}-c", chdb))
        wh = ClickHouseWarehouse(chdb, f"bench_{r}", projection=f"bench-{r}")
        clock = _Clock(n)
        best["clickhouse"] = max(best["clickhouse"], await run_one(p, TimedClickHouse(wh, clock), clock))
    return {"events_per_s": round(best["clickhouse"]), "floor_per_s": round(best["floor"]),
            "ratio": round(best["clickhouse"] / best["floor"], 3), "events": n}


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
        results: dict = {k: {"events": 0, "events_per_s": None, "floor_per_s": None, "ratio": None} for k in kinds}
        if not args.lag_only:
            results.update(await measure_framework(urls, chdb, [k for k in kinds if k in FRAMEWORK_SINKS],
                                                   events=args.framework_events, rounds=args.rounds))
            if "clickhouse" in kinds:
                results["clickhouse"] = await measure_clickhouse(urls, chdb, events=args.events, rounds=args.rounds)
        for kind in kinds:  # lag at a steady rate, one sink at a time
            p50, p99, stages = await measure_lag(urls, chdb, kind, rate=args.lag_rate, seconds=args.lag_seconds)
            results[kind].update({"lag_p50_ms": round(p50, 1), "lag_p99_ms": round(p99, 1), "lag_stages_ms": stages})
        rows = [{"sink": k, "events": v["events"], "events/s": v["events_per_s"] or "-",
                 "floor/s": v["floor_per_s"] or "-", "ratio": v["ratio"] or "-",
                 "lag p50 ms": v["lag_p50_ms"], "lag p99 ms": v["lag_p99_ms"],
                 **{f"{st} p50/p99": "/".join(f"{x:.0f}" for x in v["lag_stages_ms"].get(st, ()))
                    for st in ("publish", "fetch", "wait", "write", "see")}}
                for k, v in results.items()]
        name = "project-lag" if args.lag_only else "project"  # a lag-only run keeps project.json's rates
        report(name, rows, params={"events": args.events, "framework_events": args.framework_events,
                                   "rounds": args.rounds, "lag_rate": args.lag_rate,
                                   "lag_seconds": args.lag_seconds, "lag_only": args.lag_only})
        path = RESULTS / f"{name}.json"
        out = json.loads(path.read_text())
        fields = ("events_per_s", "floor_per_s", "ratio", "lag_p50_ms", "lag_p99_ms", "lag_stages_ms")
        out.update({k: {f: v[f] for f in fields} for k, v in results.items()})
        # top level: the worst sink's lag (each sink's own is in its object)
        out.update({"lag_p50_ms": max(v["lag_p50_ms"] for v in results.values()),
                    "lag_p99_ms": max(v["lag_p99_ms"] for v in results.values()),
                    "lag_measured_on": sorted(results), "machine": machine()})
        path.write_text(json.dumps(out, indent=2))
    finally:
        tmp.cleanup()
        if stack is not None:
            stack.down()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000, help="mixed events for the warehouse")
    ap.add_argument("--framework-events", type=int, default=40_000,
                    help="events of tests.projections.world for the Postgres and Redis projections")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--lag-rate", type=int, default=5000, help="events/s published while measuring lag")
    ap.add_argument("--lag-seconds", type=int, default=10)
    ap.add_argument("--sinks", default="postgres,redis,clickhouse", help="comma-separated sinks to measure")
    ap.add_argument("--lag-only", action="store_true",
                    help="only the lag runs (with their per-stage breakdown), into bench/results/project-lag.json")
    asyncio.run(main(ap.parse_args()))
