"""A simulated IoT gateway: publishes sensor readings over MQTT at QoS 1.

For the README's demo, the tests and the benchmark. Each message carries the
gateway's id, a sequence number and a timestamp, as real gateways do, so every
message is distinct and a redelivery is recognisable. Formats: one JSON object
per reading on ``plants/{site}/{twin}/{sensor}/reading``, or SenML packs (all
sensors of a twin) on ``plants/{site}/{twin}/senml``.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes


QUANTITIES = (("temperature", "Cel", 21.0), ("pressure", "kPa", 101.3), ("humidity", "%RH", 45.0))


def json_message(site: str, twin: str, sensor: int, seq: int, at: float, gateway: str) -> Message:
    quantity, unit, base = QUANTITIES[sensor % len(QUANTITIES)]
    value = round(base + math.sin(seq / 10 + sensor) * 2, 3)
    body = {"gw": gateway, "seq": seq, "ts": round(at, 6), "q": quantity, "v": value, "u": unit}
    return Message(f"plants/{site}/{twin}/s{sensor}/reading", json.dumps(body, separators=(",", ":")).encode())


def senml_message(site: str, twin: str, sensors: int, seq: int, at: float, gateway: str) -> Message:
    """One pack with a measurement per sensor, named after its quantity; base name and time once."""
    pack: list[dict] = []
    for s in range(sensors):
        quantity, unit, base = QUANTITIES[s % len(QUANTITIES)]
        rec: dict = {"n": f"{quantity}-{s}", "u": unit, "v": round(base + math.sin(seq / 10 + s) * 2, 3)}
        if s == 0:
            rec = {"bn": f"{gateway}:{seq}:", "bt": round(at, 6), **rec}
        pack.append(rec)
    return Message(f"plants/{site}/{twin}/senml", json.dumps(pack, separators=(",", ":")).encode())


def readings(*, site: str = "plant1", twins: int = 5, sensors: int = 4, count: int = 100,
             gateway: str = "gw-1", fmt: str = "json", start_seq: int = 0) -> Iterator[Message]:
    """``count`` messages round-robin over twins (and sensors, for JSON)."""
    for i in range(count):
        seq = start_seq + i
        twin = f"twin-{seq % twins}"
        if fmt == "senml":
            yield senml_message(site, twin, sensors, seq, time.time(), gateway)
        else:
            yield json_message(site, twin, (seq // twins) % sensors, seq, time.time(), gateway)


class Gateway:
    """A paho publisher. ``connect()``, ``publish(...)``, ``close()``; QoS 1, waits for PUBACKs."""

    def __init__(self, url: str, client_id: str = "qi-gateway-sim", max_inflight: int = 1000) -> None:
        self._url = url
        self._client_id = client_id
        self._max_inflight = max_inflight
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()

    def connect(self, timeout_s: float = 10.0) -> None:
        parts = urlsplit(self._url)
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self._client_id, protocol=mqtt.MQTTv311)
        if parts.username:
            c.username_pw_set(parts.username, parts.password)
        c.max_inflight_messages_set(self._max_inflight)
        c.max_queued_messages_set(0)
        c.on_connect = lambda *a, **k: self._connected.set()
        c.connect(parts.hostname or "127.0.0.1", parts.port or 1883, keepalive=30)
        c.loop_start()
        if not self._connected.wait(timeout_s):
            raise TimeoutError(f"no CONNACK from {parts.hostname}:{parts.port}")
        self._client = c

    def publish(self, message: Message, qos: int = 1) -> mqtt.MQTTMessageInfo:
        assert self._client is not None, "connect() first"
        return self._client.publish(message.topic, message.payload, qos=qos)

    def publish_all(self, messages, rate_per_s: float | None = None) -> int:
        """Publish, optionally paced, and wait until the broker acknowledged every one."""
        infos = []
        start = time.perf_counter()
        it = iter(messages)
        n = 0
        while True:
            if rate_per_s:  # pace first, then build the message: its timestamp is its send time
                delay = start + n / rate_per_s - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            m = next(it, None)
            if m is None:
                break
            infos.append(self.publish(m))
            n += 1
        for info in infos:
            info.wait_for_publish(timeout=60)
        return len(infos)

    def close(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
