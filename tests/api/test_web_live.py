"""The live feed's fan-out, without Kafka: bounded queues that drop the oldest, coalescing per
sensor, per-twin filters, resuming after a reconnect, and closing every stream."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from events.topics import TopicNames
from qi.api.web.live import FeedFull, LiveConfig, LiveFeed, items_of


def _feed(**cfg) -> LiveFeed:
    async def no_serde():  # the consumer waits here forever: these tests publish into the fan-out
        await asyncio.Event().wait()

    return LiveFeed(bootstrap=lambda: "127.0.0.1:1", serde=no_serde, topics=TopicNames(""),
                    config=LiveConfig(**cfg))


def _reading(twin: str, sensor: str, value: float, t_us: int) -> dict:
    return {"event_type": "SensorReading", "event_id": f"{twin}-{sensor}-{t_us}", "occurred_at": t_us,
            "twin_id": twin, "sensor_id": sensor, "quantity": "pressure", "value": value, "unit": "kPa"}


def _alert(twin: str, n: int) -> dict:
    return {"event_type": "AnomalyDetected", "event_id": f"a{n}", "occurred_at": 1_000_000 * n, "twin_id": twin,
            "sensor_id": "s1", "state": "RAISED", "score": 0.9, "threshold": 0.5, "reading_event_id": "r",
            "model_name": "m", "model_version": "1"}


def _run(coro):
    return asyncio.run(coro)


def test_a_fetch_is_coalesced_to_the_latest_reading_per_sensor_and_keeps_every_alert():
    async def go():
        feed = _feed()
        sub = feed.subscribe()
        feed.publish("readings", [_reading("t1", "s1", v, i) for i, v in enumerate([1.0, 2.0, 3.0])]
                     + [_reading("t2", "s1", 9.0, 5)])
        feed.publish("alerts", [_alert("t1", 1), _alert("t1", 2)])
        got = [json.loads(x) for x in await sub.next_batch(0.1)]
        await feed.close()
        return got

    items = _run(go())
    readings = [i for i in items if i["kind"] == "reading"]
    assert sorted((i["twin"], i["value"]) for i in readings) == [("t1", 3.0), ("t2", 9.0)]
    assert [i["id"] for i in items if i["kind"] == "alert"] == ["a1", "a2"]


def test_a_slow_client_loses_its_oldest_items_only_and_others_are_unaffected():
    async def go():
        feed = _feed(queue_size=5, max_clients=10)
        slow, fast = feed.subscribe(), feed.subscribe()
        got_fast = []
        for n in range(20):
            feed.publish("alerts", [_alert("t1", n)])
            got_fast += [json.loads(x)["id"] for x in await fast.next_batch(0.1)]
        got_slow = [json.loads(x)["id"] for x in await slow.next_batch(0.1)]
        await feed.close()
        return slow.dropped, got_slow, got_fast

    dropped, slow, fast = _run(go())
    assert slow == [f"a{n}" for n in range(15, 20)] and dropped == 15
    assert fast == [f"a{n}" for n in range(20)]


def test_a_twin_filter_and_the_client_bound():
    async def go():
        feed = _feed(max_clients=2)
        one = feed.subscribe("t2")
        feed.subscribe()
        with pytest.raises(FeedFull):
            feed.subscribe()
        feed.publish("alerts", [_alert("t1", 1), _alert("t2", 2)])
        got = [json.loads(x)["id"] for x in await one.next_batch(0.1)]
        await feed.close()
        return got

    assert _run(go()) == ["a2"]


def test_a_reconnecting_client_gets_what_it_missed_from_this_process_only():
    async def go():
        feed = _feed(replay_size=100)
        first = feed.subscribe()
        feed.publish("alerts", [_alert("t1", 1)])
        await first.next_batch(0.1)
        seen = feed.event_id(first)
        feed.unsubscribe(first)
        feed.publish("alerts", [_alert("t1", 2), _alert("t1", 3)])   # while it was away
        again = feed.subscribe(None, seen)
        stranger = feed.subscribe(None, "otherprocess:1")
        got = [json.loads(x)["id"] for x in await again.next_batch(0.1)]
        nothing = await stranger.next_batch(0.05)
        await feed.close()
        return got, nothing

    got, nothing = _run(go())
    assert got == ["a2", "a3"]
    assert nothing == []


def test_close_ends_every_stream_and_refuses_new_ones():
    async def go():
        feed = _feed()
        sub = feed.subscribe()
        waiter = asyncio.create_task(sub.next_batch(30))
        await asyncio.sleep(0)
        await feed.close()
        result = await asyncio.wait_for(waiter, 2)
        with pytest.raises(FeedFull):
            feed.subscribe()
        return result, feed.state

    assert _run(go()) == (None, "closed")


def test_what_is_shown_live():
    assert items_of("readings", {"event_type": "DeadLetter", "occurred_at": 0}) is None
    twin, key, item = items_of("scores", {"event_type": "AnomalyScored", "occurred_at": 2_000_000, "twin_id": "t",
                                          "sensor_id": "s", "value": 1.5, "score": 0.7, "is_anomaly": True})
    assert (twin, key) == ("t", "s/t/s") and item == {"kind": "score", "twin": "t", "sensor": "s", "t": 2000,
                                                      "value": 1.5, "score": 0.7, "is_anomaly": True}
    feed = _feed()
    assert feed.publish("readings", [_reading("t", "s", float("nan"), 1)]) == 0 and feed.undecodable == 1


@pytest.mark.stack
def test_the_feed_on_kafka_waits_for_its_topics_then_tails_the_log_end(platform):
    """Real broker: before its topics exist the feed waits; then only what is published after it
    went live arrives, poison is counted and skipped, and close() ends the stream."""
    import uuid
    from datetime import UTC, datetime

    from aiokafka import AIOKafkaProducer

    from events.models import AnomalyDetected, SensorReading

    async def go():
        serde = await platform.serde()
        feed = LiveFeed(bootstrap=lambda: platform.endpoints().kafka, serde=platform.serde, topics=platform.topics,
                        config=LiveConfig(retry_s=0.2))
        sub = feed.subscribe()
        await asyncio.sleep(1.0)
        waited = feed.state
        await platform.ensure_topics()
        deadline = time.monotonic() + 60
        while feed.state != "live" and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert feed.state == "live", feed.state
        raw = AIOKafkaProducer(bootstrap_servers=platform.endpoints().kafka, acks="all")
        await raw.start()
        try:   # poison on the readings topic: not our framing
            await raw.send_and_wait(platform.topics.topic("readings"), b"not avro", key=b"t1/s1")
        finally:
            await raw.stop()
        async with platform.publisher(serde) as pub:
            now = datetime.now(UTC)
            await pub.publish_many([
                SensorReading(occurred_at=now, source="t", twin_id="t1", sensor_id="s1", quantity="q", value=2.0,
                              unit="u"),
                AnomalyDetected(occurred_at=now, source="t", twin_id="t1", sensor_id="s1", state="RAISED", score=0.9,
                                threshold=0.5, reading_event_id=uuid.uuid4(), model_name="m", model_version="1")])
        got: list[dict] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            got += [json.loads(x) for x in await sub.next_batch(0.2) or []]
            if {g["kind"] for g in got} >= {"reading", "alert"}:
                break
        undecodable = feed.undecodable
        waiter = asyncio.create_task(sub.next_batch(30))
        await feed.close()
        return waited, got, undecodable, await asyncio.wait_for(waiter, 5)

    waited, got, undecodable, after_close = asyncio.run(go())
    assert waited == "connecting"
    assert sorted((g["kind"], g.get("value"), g.get("state")) for g in got) == [
        ("alert", None, "RAISED"), ("reading", 2.0, None)]
    assert undecodable == 1 and after_close is None
