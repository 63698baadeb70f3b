"""The demo plant: a gateway publishing sensor readings over MQTT, with two anomalies.

Readings are deterministic (fixed times, seeded noise), so a second run
publishes byte-identical messages: the bridge derives the same event ids
and nothing downstream is duplicated. Gauge ``gauge-0001/s1`` gets a short
spike, thermometer ``thermo-0002/s1`` a level shift: each should raise
exactly one anomaly alert.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from datetime import timedelta

from connectors.mqtt.gateway import Message
from qi.demo.world import BASE

#: (twin, sensor, quantity, unit, nominal, noise)
SENSORS = (
    ("gauge-0001", "s1", "pressure", "kPa", 101.3, 0.2),
    ("gauge-0001", "s2", "pressure", "kPa", 250.0, 0.5),
    ("thermo-0002", "s1", "temperature", "Cel", 21.0, 0.05),
    ("hygro-0004", "s1", "humidity", "%RH", 45.0, 0.4),
)
READINGS_PER_SENSOR = 300
SPIKE = ("gauge-0001", "s1", range(250, 253), 30.0)      # +30 noise units for 3 readings
SHIFT = ("thermo-0002", "s1", range(270, 300), 25.0)     # +25 noise units from reading 270 on
START = BASE + timedelta(days=30)


def messages(site: str = "plant1", gateway: str = "demo-gw-1") -> Iterator[Message]:
    """Every reading of every sensor, one minute apart, sensors interleaved in time order."""
    rnd = random.Random(2026)
    for i in range(READINGS_PER_SENSOR):
        at = START + timedelta(minutes=i)
        for twin, sensor, quantity, unit, nominal, noise in SENSORS:
            daily = math.sin(2 * math.pi * i / 1440) * noise
            value = nominal + daily + rnd.gauss(0, noise)
            for a_twin, a_sensor, when, size in (SPIKE, SHIFT):
                if (twin, sensor) == (a_twin, a_sensor) and i in when:
                    value += size * noise
            body = {"gw": gateway, "seq": i, "ts": at.timestamp(), "q": quantity, "v": round(value, 4), "u": unit}
            yield Message(f"plants/{site}/{twin}/{sensor}/reading",
                          json.dumps(body, separators=(",", ":")).encode())


def total() -> int:
    return READINGS_PER_SENSOR * len(SENSORS)
