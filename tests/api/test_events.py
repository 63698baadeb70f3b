"""POST /events: a mixed batch publishes exactly its valid events; the answer says where each went."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from qi.api.auth import Role

pytestmark = pytest.mark.stack


def _read_topic(platform, family: str) -> list:
    async def go():
        serde = await platform.serde()
        async with platform.reader(serde, [family]) as r:
            return await r.read_to_end()
    return asyncio.run(go())


def test_a_mixed_batch_publishes_exactly_the_valid_events(api_world) -> None:
    tag = uuid.uuid4().hex[:8]
    good = [{"event_type": "SensorReading", "occurred_at": "2026-11-01T10:00:00Z", "twin_id": f"post-{tag}",
             "sensor_id": f"s{i}", "quantity": "pressure", "value": 100.0 + i, "unit": "kPa"} for i in range(3)]
    twin = {"event_type": "TwinRegistered", "occurred_at": "2026-11-01T10:00:00Z", "twin_id": f"post-{tag}",
            "aggregate_version": 1, "kind": "gauge", "name": "posted"}
    batch = [good[0], {**good[1], "value": "high"}, twin, {"event_type": "NoSuchEvent"}, 42, good[1],
             {**good[2], "occurred_at": "yesterday"}, good[2], {"twin_id": "x"}]
    with api_world.client(Role.publisher) as c:
        r = c.post("/events", json=batch)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert (doc["published"], doc["rejected"]) == (4, 5)
    statuses = [x["status"] for x in doc["results"]]
    assert statuses == ["published", "rejected", "published", "rejected", "rejected", "published", "rejected",
                        "published", "rejected"]
    reasons = {x["index"]: (x["field"], x["reason"]) for x in doc["results"] if x["status"] == "rejected"}
    assert reasons[1][0] == "value" and "number" in reasons[1][1]
    assert reasons[3] == ("event_type", "unknown event type 'NoSuchEvent'")
    assert reasons[4][0] is None and "JSON object" in reasons[4][1]
    assert reasons[6][0] == "occurred_at"
    assert reasons[8][0] == "event_type" and reasons[8][1].startswith("missing")
    prefix = api_world.platform.settings.kafka.topic_prefix
    published = [x for x in doc["results"] if x["status"] == "published"]
    assert [x["topic"] for x in published] == [f"{prefix}qi.readings.v1", f"{prefix}qi.twins.v1",
                                               f"{prefix}qi.readings.v1", f"{prefix}qi.readings.v1"]
    # on the topics: exactly the valid ones, at the positions the answer gave, attributed to the caller
    records = {(rec.topic, rec.partition, rec.offset): rec for fam in ("readings", "twins")
               for rec in _read_topic(api_world.platform, fam)}
    mine = [rec for rec in records.values() if rec.decoded and rec.decoded.record.get("twin_id") == f"post-{tag}"]
    assert len(mine) == 4
    for x in published:
        rec = records[(x["topic"], x["partition"], x["offset"])]
        assert str(rec.decoded.record["event_id"]) == x["event_id"]
        assert rec.decoded.record["source"] == "qi-api:tester"
    assert sorted(rec.decoded.record.get("value", 0) for rec in mine) == [0, 100.0, 101.0, 102.0]


def test_one_object_and_same_ids_again(api_world) -> None:
    one = {"event_type": "SensorReading", "occurred_at": "2026-11-01T11:00:00Z", "twin_id": "post-one",
           "sensor_id": "s1", "quantity": "pressure", "value": 1.5, "unit": "kPa"}
    with api_world.client(Role.admin) as c:
        a = c.post("/events", json=one).json()
        b = c.post("/events", json=one).json()
    assert a["published"] == 1 and a["results"][0]["event_id"] == b["results"][0]["event_id"]  # sinks deduplicate
