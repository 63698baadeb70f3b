"""The scoring worker on the real stack: every reading scored, one alert per episode, poison, crashes."""

from __future__ import annotations

import asyncio
import math
import os
import random
import signal
import struct
from collections import Counter, defaultdict

import numpy as np
import pytest
from aiokafka import AIOKafkaProducer

from events.models import TwinRegistered
from streams.anomaly import ALERT_RAISED, Scorer
from streams.anomaly.scorer import ALERT_NONE
from streams.ids import derived_id
from tests.streams.anomaly._support import interleave, read_all, sensor_series, start_worker, worker_env
from tests.streams.helpers import running, wait_for

pytestmark = pytest.mark.stack


def _isolate(platform, topic_prefix):
    platform.settings.kafka.client_id = f"qi-{topic_prefix.rstrip('.')}"


def test_every_reading_is_scored_and_a_spike_and_a_level_shift_each_raise_one_alert(platform, topic_prefix):
    _isolate(platform, topic_prefix)
    per_sensor = sensor_series(4, 700, seed=11, spikes={0: 500}, shifts={1: 520})
    events = interleave(per_sensor, 0, 700)

    async def go():
        await platform.ensure_topics()
        serde = await platform.serde()
        async with platform.publisher(serde) as pub:
            await pub.publish_many(events)
        proc = platform.score_processor(serde)
        async with running(platform, proc) as runner:
            await wait_for(lambda: sum(runner.metrics.consumed.values()) >= len(events), 60)
        return await read_all(platform, "scores", len(events)), await read_all(platform, "alerts", 3)

    scores, alerts = asyncio.run(go())
    by_reading = {r.decoded.record["reading_event_id"]: r.decoded.record for r in scores}
    assert len(scores) == len(events) and set(map(str, by_reading)) == {str(e.event_id) for e in events}
    for rec in by_reading.values():
        assert 0.0 <= rec["score"] <= 1.0 and rec["model_name"] == Scorer.model_name and rec["model_version"]
        assert str(rec["event_id"]) == str(derived_id("score", rec["reading_event_id"]))
    raised = [a.decoded.record for a in alerts if a.decoded.record["state"] == "RAISED"]
    assert Counter(a["twin_id"] for a in raised) == {"tw-0": 1, "tw-1": 1}
    spike = next(a for a in raised if a["twin_id"] == "tw-0")
    shift = next(a for a in raised if a["twin_id"] == "tw-1")
    assert str(spike["reading_event_id"]) == str(per_sensor[0][500].event_id)
    assert str(shift["reading_event_id"]) == str(per_sensor[1][520].event_id)
    cleared = [a.decoded.record for a in alerts if a.decoded.record["state"] == "CLEARED"]
    assert {a["twin_id"] for a in cleared} <= {"tw-0", "tw-1"} and Counter(a["twin_id"] for a in cleared)["tw-0"] == 1


def test_fuzz_every_malformed_message_is_dead_lettered_with_its_reason_and_every_reading_scored(
        platform, topic_prefix, stack_env, tmp_path):
    rng = random.Random(1234)
    valid = interleave(sensor_series(10, 150, seed=3), 0, 150)

    async def go():
        await platform.ensure_topics()
        serde = await platform.serde()
        framed = [serde.encode_event(e) for e in valid]
        twin = TwinRegistered(occurred_at=valid[0].occurred_at, source="fuzz", twin_id="tw-x", kind="pump", name="p",
                              aggregate_version=1)
        bad: list[tuple[bytes, str]] = []
        for i in range(1000):
            kind = i % 5
            if kind == 0:
                b = bytes([rng.randrange(1, 256)]) + os.urandom(rng.randrange(0, 60))
                bad.append((b, "NOT_FRAMED"))
            elif kind == 1:
                f = rng.choice(framed)
                bad.append((f[: rng.randrange(6, len(f) - 8)], "BAD_PAYLOAD"))
            elif kind == 2:
                bad.append((b"\x00" + struct.pack(">I", 900_000 + i) + os.urandom(20), "UNKNOWN_SCHEMA"))
            elif kind == 3:
                bad.append((serde.encode_event(twin.model_copy(update={"twin_id": f"tw-{i}"})), "VALIDATION_FAILED"))
            else:
                rec = valid[i % len(valid)].to_avro() | {"value": rng.choice([math.nan, math.inf, -math.inf])}
                rec["event_id"] = derived_id("fuzz", i)
                bad.append((serde.encode("SensorReading", rec), "VALIDATION_FAILED"))
        # interleave at random, keeping the valid readings (and so each sensor) in time order
        goods = [(f, "ok", e) for f, e in zip(framed, valid)]
        bads = [(b, k, None) for b, k in bad]
        rng.shuffle(bads)
        mixed, gi = [], 0
        while gi < len(goods) or bads:
            if bads and rng.random() < len(bads) / (len(bads) + len(goods) - gi):
                mixed.append(bads.pop())
            else:
                mixed.append(goods[gi])
                gi += 1
        p = AIOKafkaProducer(bootstrap_servers=platform.endpoints().kafka)
        await p.start()
        try:
            futs = []
            for value, kind, ev in mixed:
                key = f"{ev.twin_id}/{ev.sensor_id}".encode() if ev else os.urandom(4)
                futs.append((kind, await p.send(platform.topics.topic("readings"), value, key=key)))
            sent = [(kind, await f) for kind, f in futs]
        finally:
            await p.stop()
        expected_bad = {(m.partition, m.offset): kind for kind, m in sent if kind != "ok"}
        proc = start_worker(worker_env(stack_env, topic_prefix), tmp_path / "worker.log")
        try:
            scores = await read_all(platform, "scores", len(valid), timeout_s=90)
            dead = await read_all(platform, "deadletter", len(expected_bad), timeout_s=60)
            alive = proc.poll() is None
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        return expected_bad, scores, dead, alive

    expected_bad, scores, dead, alive = asyncio.run(go())
    assert alive, "the worker died"
    assert len(expected_bad) == 1000
    got = {(d.decoded.record["source_partition"], d.decoded.record["source_offset"]): d.decoded.record for d in dead}
    assert len(dead) == len(got) == 1000
    assert {k: v["error_kind"] for k, v in got.items()} == expected_bad
    assert all(v["worker"] == "score" and v["original"] for v in got.values())
    nonfinite = [v for v in got.values() if v["error_kind"] == "VALIDATION_FAILED" and "value is" in v["error_message"]]
    assert len(nonfinite) == 200
    assert {str(s.decoded.record["reading_event_id"]) for s in scores} == {str(e.event_id) for e in valid}


def test_sigkilled_worker_loses_and_doubles_nothing(platform, topic_prefix, stack_env, tmp_path):
    _isolate(platform, topic_prefix)
    rng = random.Random(99)
    n = 480
    per_sensor = sensor_series(12, n, seed=5, spikes={0: 200, 2: 300, 3: 420}, shifts={1: 260, 4: 390})
    env = worker_env(stack_env, topic_prefix, QI_RUNNER_MAX_BATCH="60", QI_ANOMALY_SNAPSHOT_EVERY_BATCHES="3")
    log = tmp_path / "worker.log"
    kills = []
    allowed = [0]      # time steps the feed may publish so far
    published = [0]

    async def trickle(serde):
        async with platform.publisher(serde) as pub:
            while published[0] < n:  # readings keep flowing while each worker process runs
                if published[0] >= allowed[0]:
                    await asyncio.sleep(0.05)
                    continue
                hi = min(published[0] + 8, n)
                await pub.publish_many(interleave(per_sensor, published[0], hi))
                published[0] = hi
                await asyncio.sleep(0.3)

    def lives() -> int:
        return log.read_text().count('"score.assigned"') if log.exists() else 0

    async def go():
        await platform.ensure_topics()
        serde = await platform.serde()
        feed = asyncio.create_task(trickle(serde))
        for life in range(4):
            before = lives()
            proc = start_worker(env, log)
            await wait_for(lambda: lives() > before, 90)
            allowed[0] = (life + 1) * n // 5   # this life's share of the stream starts flowing now
            delay = rng.uniform(0.5, 3.5)
            await asyncio.sleep(delay)
            kills.append((round(delay, 2), published[0]))
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        allowed[0] = n
        await feed
        proc = start_worker(env, log)
        try:
            scores = await read_all(platform, "scores", 12 * n, timeout_s=120)
            uniq = {s.decoded.record["reading_event_id"] for s in scores}
            deadline = asyncio.get_running_loop().time() + 120
            while len(uniq) < 12 * n and asyncio.get_running_loop().time() < deadline:
                scores = await read_all(platform, "scores", len(scores) + 1, timeout_s=5)
                uniq = {s.decoded.record["reading_event_id"] for s in scores}
            alerts = await read_all(platform, "alerts")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        readings = await read_all(platform, "readings", 12 * n)
        return scores, alerts, readings

    scores, alerts, readings = asyncio.run(go())
    # every reading has a score; duplicates share the event_id and the score itself
    seen: dict[str, set] = defaultdict(set)
    for s in scores:
        r = s.decoded.record
        seen[str(r["reading_event_id"])].add((str(r["event_id"]), r["score"], r["is_anomaly"]))
    assert all(0 < at < n for _, at in kills), f"kills not mid-stream: {kills}"

    assert len(seen) == 12 * n, f"missing scores after kills at {kills}"
    differing = {k: v for k, v in seen.items() if len(v) != 1}
    assert not differing, f"{len(differing)} readings scored differently on redelivery, e.g. {list(differing.items())[:3]}"

    # the alerts equal a clean, uninterrupted run of the scorer over each partition in offset order
    expected = set()
    by_tp = defaultdict(list)
    for r in readings:
        by_tp[r.partition].append(r)
    for recs in by_tp.values():
        recs.sort(key=lambda r: r.offset)
        rows = [r.decoded.record for r in recs]
        res = Scorer().score_batch([f"{x['twin_id']}/{x['sensor_id']}" for x in rows],
                                   np.array([x["occurred_at"].timestamp() for x in rows]),
                                   np.array([x["value"] for x in rows]))
        for x, al in zip(rows, res.alert.tolist()):
            if al != ALERT_NONE:
                expected.add(str(derived_id("alert", x["event_id"], "RAISED" if al == ALERT_RAISED else "CLEARED")))
    got = Counter(str(a.decoded.record["event_id"]) for a in alerts)
    assert set(got) == expected, f"kills at {kills}"
    raised_twins = Counter(a.decoded.record["twin_id"] for a in alerts
                           if a.decoded.record["state"] == "RAISED" and str(a.decoded.record["event_id"]) in expected)
    assert {"tw-0", "tw-1", "tw-2", "tw-3", "tw-4"} <= {t for t in raised_twins}
