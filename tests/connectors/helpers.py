"""Helpers for the bridge's stack tests: a per-test mapping, a bridge on a task or in a process,
an MQTT gateway that is not the bridge (paho), and collecting what reached Kafka."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

from connectors.mqtt.bridge import MqttBridge
from connectors.mqtt.gateway import Gateway, Message
from connectors.mqtt.mapping import MappingFile, parse_mapping
from events.serde import Serde
from qi.platform import Platform

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "connectors" / "mqtt" / "examples" / "plant.toml"


def mapping_text(site: str, client_id: str) -> str:
    """The example mapping, restricted to one site and with its own client id (its own session)."""
    return (EXAMPLE.read_text()
            .replace("plants/+/", f"plants/{site}/")
            .replace('client_id = "qi-bridge-plant"', f'client_id = "{client_id}"'))


def site_for(topic_prefix: str) -> str:
    return "site-" + topic_prefix.strip(".").replace(".", "-")


def mapping_for(topic_prefix: str) -> MappingFile:
    return parse_mapping(mapping_text(site_for(topic_prefix), f"qi-test-{site_for(topic_prefix)}"))


@contextlib.asynccontextmanager
async def bridge_running(platform: Platform, mapping: MappingFile) -> AsyncIterator[tuple[MqttBridge, Serde]]:
    """A bridge on a task, subscribed before this yields; stopped and awaited on exit."""
    await platform.ensure_topics()
    serde = await platform.serde()
    bridge = platform.mqtt_bridge(mapping, serde)
    stop = asyncio.Event()
    task = asyncio.create_task(bridge.run(stop))
    try:
        await wait_until(lambda: bridge.metrics.connected or task.done(), 20)
        if task.done():
            task.result()
        yield bridge, serde
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def wait_until(predicate, timeout_s: float = 30.0, every_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(every_s)


def publish(url: str, messages: list[Message], rate_per_s: float | None = None, client_id: str | None = None) -> int:
    gw = Gateway(url, client_id=client_id or f"qi-test-gw-{os.getpid()}-{time.monotonic_ns()}")
    gw.connect()
    try:
        return gw.publish_all(messages, rate_per_s=rate_per_s)
    finally:
        gw.close()


async def collect(platform: Platform, serde: Serde, family: str, distinct: int, timeout_s: float = 60.0,
                  settle_s: float = 0.0) -> list[dict]:
    """Decoded records of a topic family until ``distinct`` event ids arrived (then ``settle_s`` more)."""
    out: list[dict] = []
    ids: set = set()
    reader = platform.reader(serde, [family])
    await reader.start()
    try:
        deadline = time.monotonic() + timeout_s
        settle_until = None
        async for batch in reader.batches(timeout_ms=200):
            for rec in batch:
                assert rec.decoded is not None, rec.error
                out.append(rec.decoded.record)
                ids.add(rec.decoded.record["event_id"])
            now = time.monotonic()
            if len(ids) >= distinct and settle_until is None:
                settle_until = now + settle_s
            if settle_until is not None and now >= settle_until:
                return out
            if now > deadline:
                raise AssertionError(f"only {len(ids)} of {distinct} distinct events in {timeout_s}s")
    finally:
        await reader.close()
    return out


def expected_json(messages: list[Message]) -> set[tuple]:
    """(twin_id, sensor_id, value, unit, occurred_at micros) that each JSON message must become."""
    out = set()
    for m in messages:
        levels = m.topic.split("/")
        body = json.loads(m.payload)
        out.add((levels[2], levels[3], body["v"], body["u"], round(body["ts"] * 1_000_000)))
    return out


def observed(records: list[dict]) -> set[tuple]:
    return {(r["twin_id"], r["sensor_id"], r["value"], r["unit"],
             round(r["occurred_at"].timestamp() * 1_000_000)) for r in records}


def assert_duplicates_identical(records: list[dict]) -> None:
    """Records sharing an event_id carry the same reading (recorded_at may differ)."""
    seen: dict = {}
    for r in records:
        body = (r["twin_id"], r["sensor_id"], r["quantity"], r["value"], r["unit"], r["occurred_at"])
        assert seen.setdefault(r["event_id"], body) == body


def bridge_process(env: dict[str, str], config: Path, log: Path) -> subprocess.Popen:
    """``qi bridge mqtt`` as its own process (for SIGKILL and memory measurements)."""
    return subprocess.Popen([sys.executable, "-m", "qi", "bridge", "mqtt", "--config", str(config)],
                            cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
