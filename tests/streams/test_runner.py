"""The batch runner against the real broker: batches, dead letters, isolation, retries, groups."""

from __future__ import annotations

import asyncio
import os
import struct

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from events.publisher import OutgoingRecord
from events.reader import ConsumedRecord
from streams.errors import SinkUnavailable
from streams.ids import derived_id
from streams.processor import BatchResult, Poison, Processor
from tests.streams.helpers import readings, running, wait_for

pytestmark = pytest.mark.stack


class Doubler(Processor):
    """Emits one AnomalyScored per reading (score = value / 1000), deterministic ids."""

    name = "doubler"
    families = ("readings",)

    def __init__(self, serde, topics, *, fail_values=(), flaky_batches=0, poison_values=()) -> None:
        self.serde, self.topics = serde, topics
        self.fail_values, self.poison_values = set(fail_values), set(poison_values)
        self.flaky_batches = flaky_batches
        self.calls = 0
        self.flushes = 0
        self.seen: list[tuple[int, int]] = []
        self.revocations: list[set] = []

    async def process(self, records: list[ConsumedRecord]) -> BatchResult:
        self.calls += 1
        if self.flaky_batches:
            self.flaky_batches -= 1
            raise SinkUnavailable("sink down for a moment", dependency="test")
        out = BatchResult()
        for r in records:
            rec = r.decoded.record
            if rec["value"] in self.fail_values:
                raise ValueError(f"cannot handle {rec['value']}")
            if rec["value"] in self.poison_values:
                out.poison.append(Poison(r, "VALIDATION_FAILED", "value is forbidden"))
                continue
            eid = derived_id("test-score", rec["event_id"])
            value = self.serde.encode("AnomalyScored", {
                "event_id": eid, "event_type": "AnomalyScored", "occurred_at": rec["occurred_at"],
                "recorded_at": rec["occurred_at"], "source": "doubler", "correlation_id": None,
                "causation_id": str(rec["event_id"]), "twin_id": rec["twin_id"], "sensor_id": rec["sensor_id"],
                "reading_event_id": rec["event_id"], "value": rec["value"], "score": rec["value"] / 1000,
                "is_anomaly": False, "model_name": "doubler", "model_version": "1",
            })
            out.outputs.append(OutgoingRecord(self.topics.topic("scores"), r.key, value, str(eid)))
            self.seen.append((r.partition, r.offset))
        return out

    async def flush(self) -> None:
        self.flushes += 1

    async def revoked(self, partitions) -> None:
        self.revocations.append(partitions)


async def _read_all(platform, family: str, expect: int, timeout_s: float = 30.0) -> list[ConsumedRecord]:
    serde = await platform.serde()
    async with platform.reader(serde, [family]) as reader:
        out: list[ConsumedRecord] = []
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(out) < expect and asyncio.get_running_loop().time() < deadline:
            out = await reader.read_to_end()
            if len(out) < expect:
                await asyncio.sleep(0.2)
                await reader.close()
                reader = platform.reader(serde, [family])
                await reader.start()
        return out


async def _committed(platform, group: str) -> dict[int, int]:
    topic = platform.topics.topic("readings")
    c = AIOKafkaConsumer(bootstrap_servers=platform.endpoints().kafka, group_id=group, enable_auto_commit=False)
    await c.start()
    try:
        parts = c.partitions_for_topic(topic) or set()
        return {p: (await c.committed(TopicPartition(topic, p))) or 0 for p in parts}
    finally:
        await c.stop()


async def _raw_send(platform, values: list[bytes]) -> None:
    p = AIOKafkaProducer(bootstrap_servers=platform.endpoints().kafka)
    await p.start()
    try:
        for v in values:
            await p.send_and_wait(platform.topics.topic("readings"), v, key=b"poison")
    finally:
        await p.stop()


def test_every_reading_gets_one_output_and_poison_goes_to_dead_letters(platform):
    async def go():
        await platform.ensure_topics()
        serde = await platform.serde()
        good = readings(3000, sensors=50)
        framed = serde.encode_event(good[0])
        poison = [
            os.urandom(40),                                   # not our framing
            b"\x00" + struct.pack(">I", 424242) + b"abc",    # unknown schema id
            framed[:9],                                       # truncated
            serde.encode_event(good[0].model_copy())[:5],     # header only
        ]
        async with platform.publisher(serde) as pub:
            await pub.publish_many(good[:1500])
            await _raw_send(platform, poison)
            await pub.publish_many(good[1500:])
        proc = Doubler(serde, platform.topics, fail_values={777.0}, poison_values={778.0})
        async with running(platform, proc) as runner:
            await wait_for(lambda: sum(runner.metrics.consumed.values()) >= 3004, 60)
        scores = await _read_all(platform, "scores", 2998)
        dead = await _read_all(platform, "deadletter", 6)
        return good, scores, dead, proc, runner, await _committed(platform, "qi-doubler")

    good, scores, dead, proc, runner, committed = asyncio.run(go())
    want = {str(derived_id("test-score", e.event_id)) for e in good if e.value not in (777.0, 778.0)}
    got = [str(r.decoded.record["event_id"]) for r in scores]
    assert set(got) == want and len(got) == len(want)  # exactly once: no crash, no duplicate
    kinds = sorted(r.decoded.record["error_kind"] for r in dead)
    assert kinds == ["BAD_PAYLOAD", "BAD_PAYLOAD", "NOT_FRAMED", "PROCESSING_ERROR", "UNKNOWN_SCHEMA",
                     "VALIDATION_FAILED"]
    by_kind = {r.decoded.record["error_kind"]: r.decoded.record for r in dead}
    assert "cannot handle 777.0" in by_kind["PROCESSING_ERROR"]["error_message"]
    assert by_kind["UNKNOWN_SCHEMA"]["original"].startswith(b"\x00")
    assert all(r.decoded.record["worker"] == "doubler" for r in dead)
    # every input offset committed, after the outputs
    assert sum(committed.values()) == 3004
    assert proc.flushes == runner.metrics.batches
    assert runner.metrics.dead_lettered[platform.topics.topic("readings")] == 6


def test_a_retriable_failure_retries_the_same_batch_and_loses_nothing(platform):
    async def go():
        await platform.ensure_topics()
        serde = await platform.serde()
        good = readings(500)
        async with platform.publisher(serde) as pub:
            await pub.publish_many(good)
        proc = Doubler(serde, platform.topics, flaky_batches=3)
        async with running(platform, proc) as runner:
            await wait_for(lambda: len(proc.seen) >= 500, 60)
        scores = await _read_all(platform, "scores", 500)
        return scores, runner

    scores, runner = asyncio.run(go())
    assert len(scores) == 500 and len({r.decoded.record["event_id"] for r in scores}) == 500
    assert runner.metrics.retries >= 3


def test_a_stopped_runner_resumes_from_its_committed_offsets(platform):
    async def go():
        await platform.ensure_topics()
        serde = await platform.serde()
        async with platform.publisher(serde) as pub:
            await pub.publish_many(readings(400))
        first = Doubler(serde, platform.topics)
        async with running(platform, first):
            await wait_for(lambda: len(first.seen) >= 400)
        async with platform.publisher(serde) as pub:
            await pub.publish_many(readings(100, start=__import__("datetime").datetime(2026, 12, 1,
                                   tzinfo=__import__("datetime").UTC)))
        second = Doubler(serde, platform.topics)
        async with running(platform, second):
            await wait_for(lambda: len(second.seen) >= 100)
            await asyncio.sleep(1.0)
        return first, second

    first, second = asyncio.run(go())
    assert len(first.seen) == 400
    assert len(second.seen) == 100  # only the new ones: nothing reprocessed after a clean stop
    assert not set(first.seen) & set(second.seen)


def test_two_runners_in_one_group_share_partitions_and_cover_every_input(platform):
    async def go():
        await platform.ensure_topics()
        serde = await platform.serde()
        good = readings(4000, sensors=200)
        a, b = Doubler(serde, platform.topics), Doubler(serde, platform.topics)
        async with running(platform, a):
            async with platform.publisher(serde) as pub:
                await pub.publish_many(good[:1000])
            await wait_for(lambda: len(a.seen) >= 1000, 60)
            async with running(platform, b) as rb:
                await wait_for(lambda: rb.assignment(), 60)
                async with platform.publisher(serde) as pub:
                    await pub.publish_many(good[1000:])
                await wait_for(lambda: len(set(a.seen) | set(b.seen)) >= 4000, 90)
        scores = await _read_all(platform, "scores", 4000)
        return good, a, b, scores

    good, a, b, scores = asyncio.run(go())
    assert a.revocations, "the first runner gave partitions away when the second joined"
    assert b.seen, "the second runner got partitions"
    want = {str(derived_id("test-score", e.event_id)) for e in good}
    assert {str(r.decoded.record["event_id"]) for r in scores} == want


class SinkCheckpointed(Doubler):
    """A processor whose sink keeps its own positions: group offsets are committed lazily (0066)."""

    name = "lazy-committer"
    commit_every_s = 3600.0


def test_a_sink_checkpointed_processor_commits_in_the_background_and_on_stop(platform):
    async def go():
        await platform.ensure_topics()
        serde = await platform.serde()
        proc = SinkCheckpointed(serde, platform.topics)
        async with running(platform, proc) as runner:
            await wait_for(lambda: runner.health()["joined"], 60)
            async with platform.publisher(serde) as pub:
                await pub.publish_many(readings(200))
            await wait_for(lambda: len(proc.seen) >= 200, 60)
            async with platform.publisher(serde) as pub:
                await pub.publish_many(readings(200, start=__import__("datetime").datetime(
                    2026, 12, 1, tzinfo=__import__("datetime").UTC)))
            await wait_for(lambda: len(proc.seen) >= 400, 60)
            while_running = await _committed(platform, "qi-lazy-committer")
        return proc, while_running, await _committed(platform, "qi-lazy-committer")

    proc, while_running, after_stop = asyncio.run(go())
    assert len(proc.seen) == 400
    # within the hour only the first batch's commit went out: the later batches did not wait for one
    assert sum(while_running.values()) < 400
    assert sum(after_stop.values()) == 400  # leaving the group commits everything handled
