"""/ready, /live, /health and /metrics of a running worker, over real HTTP."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from events.reader import ConsumedRecord
from streams.health import HealthServer, announced_url
from streams.processor import BatchResult, Processor
from tests.streams.helpers import readings, running, wait_for

pytestmark = pytest.mark.stack


class Slow(Processor):
    """Consumes readings slowly and produces nothing: lag builds up, then drains."""

    name = "slow"
    families = ("readings",)

    def __init__(self) -> None:
        self.seen = 0
        self.gate = asyncio.Event()

    async def process(self, records: list[ConsumedRecord]) -> BatchResult:
        await self.gate.wait()
        self.seen += len(records)
        return BatchResult()


def test_ready_is_false_while_far_behind_and_true_once_caught_up(platform, tmp_path):
    async def go():
        await platform.ensure_topics()
        serde = await platform.serde()
        async with platform.publisher(serde) as pub:
            await pub.publish_many(readings(3000, sensors=30))
        proc = Slow()
        async with running(platform, proc) as runner:
            server = HealthServer(runner.health, [runner.metrics.registry], announce=tmp_path / "health" / "slow.json")
            await server.start()
            try:
                assert announced_url(tmp_path, "slow") == server.url
                async with httpx.AsyncClient(base_url=server.url) as http:
                    assert (await http.get("/live")).status_code == 200
                    # blocked in the first batch: lag is known and large, or not yet known: not ready
                    await wait_for(lambda: runner.health()["joined"] and runner.assignment(), 30)
                    behind = await http.get("/ready")
                    proc.gate.set()
                    await wait_for(lambda: proc.seen >= 3000, 60)
                    # lag is refreshed at most once a second: wait for the worker to notice, not a fixed time
                    await wait_for(lambda: runner.health()["ready"], 15)
                    caught_up = await http.get("/ready")
                    metrics = (await http.get("/metrics")).text
                    detail = (await http.get("/health")).json()
            finally:
                await server.close()
        return behind, caught_up, metrics, detail, platform.topics.topic("readings")

    behind, caught_up, metrics, detail, topic = asyncio.run(go())
    assert behind.status_code == 503 and behind.json()["ready"] is False
    assert caught_up.status_code == 200, caught_up.json()
    assert caught_up.json()["lag"] == 0
    consumed = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                   if line.startswith("qi_events_consumed_total{") and f'topic="{topic}"' in line)
    assert consumed == 3000
    assert 'qi_consumer_lag{partition="0"' in metrics
    assert detail["live"] is True and detail["worker"] == "slow"
    # the log ends the lag was taken against: 3,000 records over the topic's partitions
    assert sum(n for tp, n in detail["log_ends_seen"].items() if tp.startswith(topic + "/")) == 3000
