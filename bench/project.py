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

    python bench/project.py [--events 100000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
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
    return Settings(kafka=KafkaSettings(bootstrap=urls["kafka"], topic_prefix=prefix, client_id=client_id),
                    schema_registry=SchemaRegistrySettings(), postgres=PostgresSettings(),
                    clickhouse=ClickHouseSettings(dsn=chdb), redis=RedisSettings(), mqtt=MqttSettings(),
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
        ch = {"events_per_s": round(best["clickhouse"]), "floor_per_s": round(best["floor"]),
              "ratio": round(best["clickhouse"] / best["floor"], 3)}
        rows = [{"sink": "clickhouse", "events/s": ch["events_per_s"], "floor/s": ch["floor_per_s"],
                 "ratio": ch["ratio"]}]
        report("project", rows, params={"events": n, "rounds": args.rounds})
        path = RESULTS / "project.json"
        out = json.loads(path.read_text())
        out.update({"clickhouse": ch, "machine": machine()})
        path.write_text(json.dumps(out, indent=2))
    finally:
        tmp.cleanup()
        if stack is not None:
            stack.down()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=2)
    asyncio.run(main(ap.parse_args()))
