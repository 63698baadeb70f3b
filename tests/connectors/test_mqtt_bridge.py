"""The bridge on the real local stack: an independent paho gateway publishes, Kafka is read back."""

from __future__ import annotations

import asyncio
import json

import pytest

from connectors.mqtt.gateway import Message, readings
from tests.connectors.helpers import (
    assert_duplicates_identical,
    bridge_running,
    collect,
    expected_json,
    mapping_for,
    observed,
    publish,
    site_for,
)

pytestmark = pytest.mark.stack


def test_ten_thousand_readings_arrive_exactly_once_after_dedup(platform, topic_prefix):
    site = site_for(topic_prefix)
    messages = list(readings(site=site, twins=50, sensors=4, count=10_000, gateway="gw-load"))
    url = platform.endpoints().mqtt

    async def go():
        async with bridge_running(platform, mapping_for(topic_prefix)) as (bridge, serde):
            await asyncio.to_thread(publish, url, messages)
            got = await collect(platform, serde, "readings", 10_000, timeout_s=90, settle_s=1.0)
            await asyncio.sleep(0.3)
            return got, bridge.metrics.snapshot()

    got, counters = asyncio.run(go())
    assert len({r["event_id"] for r in got}) == 10_000
    assert observed(got) == expected_json(messages)  # every reading, topic levels mapped to fields
    assert_duplicates_identical(got)
    assert {r["source"] for r in got} == {"gw-load"}
    assert len({(r["twin_id"], r["sensor_id"]) for r in got}) == 200
    assert counters["received"] >= 10_000 and counters["dead_lettered"] == 0
    assert counters["acked"] == counters["received"] and counters["in_flight"] == 0


def test_senml_packs_expand_with_base_values(platform, topic_prefix):
    site = site_for(topic_prefix)
    packs = list(readings(site=site, twins=4, sensors=3, count=40, gateway="gw-senml", fmt="senml"))
    url = platform.endpoints().mqtt

    async def go():
        async with bridge_running(platform, mapping_for(topic_prefix)) as (_, serde):
            await asyncio.to_thread(publish, url, packs)
            return await collect(platform, serde, "readings", 120, timeout_s=30, settle_s=0.5)

    got = asyncio.run(go())
    assert len({r["event_id"] for r in got}) == 120
    want = set()
    for m in packs:
        pack = json.loads(m.payload)
        twin, bt, seen_unit = m.topic.split("/")[2], pack[0]["bt"], None
        for rec in pack:
            seen_unit = rec.get("u", seen_unit)
            want.add((twin, rec["n"], rec["v"], seen_unit, round(bt * 1_000_000)))
    assert observed(got) == want
    assert {r["quantity"] for r in got} == {"temperature-0", "pressure-1", "humidity-2"}


def test_bad_payloads_are_dead_lettered_with_their_reason_and_the_bridge_keeps_running(platform, topic_prefix):
    site = site_for(topic_prefix)
    base = f"plants/{site}/tw-1"
    bad = {
        "bad_json": Message(f"{base}/s1/reading", b'{"v": 1, "u": '),
        "wrong_type": Message(f"{base}/s1/reading", b'{"v": "21.5", "u": "Cel", "ts": 1763899200}'),
        "non_finite": Message(f"{base}/s1/reading", b'{"v": 1e400, "u": "Cel", "ts": 1763899200}'),
        "missing_field": Message(f"{base}/s1/reading", b'{"u": "Cel", "ts": 1763899200}'),
        "oversized": Message(f"{base}/s1/reading", b'{"v": 1, "u": "Cel", "x": "' + b"x" * 70_000 + b'"}'),
        "senml_nan": Message(f"{base}/senml", b'[{"n": "t", "u": "Cel", "v": NaN}]'),
    }
    # Matches the subscription plants/<site>/+/+/reading, but an empty level is no sensor id, so no
    # mapping applies (as with a filter removed from the file while the broker kept the session's).
    bad["unmapped_topic"] = Message(f"{base}//reading", b'{"v": 1, "u": "Cel"}')
    good = [Message(f"{base}/s{i}/reading", json.dumps({"v": i, "u": "Cel", "ts": 1763899200 + i}).encode())
            for i in range(5)]
    url = platform.endpoints().mqtt

    async def go():
        async with bridge_running(platform, mapping_for(topic_prefix)) as (bridge, serde):
            await asyncio.to_thread(publish, url, [good[0], *bad.values(), good[1], good[2]])
            dead = await collect(platform, serde, "deadletter", len(bad), timeout_s=30)
            await asyncio.to_thread(publish, url, good[3:])  # still running after the bad ones
            ok = await collect(platform, serde, "readings", 5, timeout_s=30)
            await asyncio.sleep(0.3)
            return dead, ok, bridge.metrics.snapshot()

    dead, ok, counters = asyncio.run(go())
    for reason, msg in bad.items():
        r = "non_finite" if reason == "senml_nan" else reason
        d = next(x for x in dead if msg.payload.startswith(x["original"]) and x["source_topic"] == msg.topic
                 and x["error_message"].startswith(r))
        assert d["error_message"].startswith(r + ":"), d["error_message"]
        assert d["source_topic"] == msg.topic and d["worker"] == "bridge-mqtt"
    assert len(dead) == len(bad)
    assert len(next(x for x in dead if x["error_message"].startswith("oversized"))["original"]) == 65536
    assert sorted(r["value"] for r in ok) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert counters["dead_lettered"] == len(bad) and counters["in_flight"] == 0


def test_a_bug_in_conversion_dead_letters_the_message_instead_of_stalling(platform, topic_prefix, monkeypatch):
    from connectors.mqtt.convert import Converter

    real = Converter.convert_timed

    def buggy(self, topic, payload, now=None):  # noqa: ANN001
        if b"trigger" in payload:
            raise RuntimeError("injected bug")
        return real(self, topic, payload, now)

    monkeypatch.setattr(Converter, "convert_timed", buggy)
    base = f"plants/{site_for(topic_prefix)}/tw-1"
    msgs = [Message(f"{base}/s1/reading", b'{"v": 1, "u": "Cel", "trigger": 1}'),
            Message(f"{base}/s2/reading", b'{"v": 2, "u": "Cel"}')]
    url = platform.endpoints().mqtt

    async def go():
        async with bridge_running(platform, mapping_for(topic_prefix)) as (bridge, serde):
            await asyncio.to_thread(publish, url, msgs)
            dead = await collect(platform, serde, "deadletter", 1, timeout_s=30)
            ok = await collect(platform, serde, "readings", 1, timeout_s=30)
            await asyncio.sleep(0.3)
            return dead, ok, bridge.metrics.snapshot()

    dead, ok, counters = asyncio.run(go())
    assert dead[0]["error_kind"] == "PROCESSING_ERROR" and "injected bug" in dead[0]["error_message"]
    assert dead[0]["original"] == msgs[0].payload
    assert [r["value"] for r in ok] == [2.0] and counters["in_flight"] == 0 and counters["acked"] == 2
