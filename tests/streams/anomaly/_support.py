"""Helpers for the scoring worker's stack tests."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import numpy as np

from events.models import SensorReading
from events.reader import ConsumedRecord
from qi.platform import Platform

DAY = 86_400.0


def sensor_series(sensors: int, n: int, *, seed: int, spikes: dict[int, int] = {}, shifts: dict[int, int] = {},
                  step_s: float = 300.0) -> list[list[SensorReading]]:
    """Per sensor, n readings of a daily sine with noise; ``spikes``/``shifts``: sensor -> reading index."""
    rng = np.random.default_rng(seed)
    t0 = datetime(2026, 3, 2, tzinfo=UTC)
    out = []
    for s in range(sensors):
        t = np.arange(n) * step_s
        v = 50 + 10 * np.sin(2 * np.pi * t / DAY + s) + rng.normal(0, 1.0, n)
        if s in spikes:
            v[spikes[s]] += 15
        if s in shifts:
            v[shifts[s]:] += 12
        out.append([SensorReading(occurred_at=t0 + timedelta(seconds=float(t[i])), source="test", twin_id=f"tw-{s}",
                                  sensor_id="flow", quantity="flow", value=float(v[i]), unit="l/min")
                    for i in range(n)])
    return out


def interleave(per_sensor: list[list[SensorReading]], lo: int, hi: int) -> list[SensorReading]:
    return [series[i] for i in range(lo, hi) for series in per_sensor]


async def read_all(platform: Platform, family: str, expect: int = 0, timeout_s: float = 60.0) -> list[ConsumedRecord]:
    """Everything on a topic, polling until at least ``expect`` records are there."""
    serde = await platform.serde()
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        async with platform.reader(serde, [family]) as reader:
            out = await reader.read_to_end()
        if len(out) >= expect or asyncio.get_running_loop().time() > deadline:
            return out
        await asyncio.sleep(0.3)


def worker_env(stack_env: dict[str, str], prefix: str, **extra: str) -> dict[str, str]:
    env = dict(stack_env)
    env.update({"QI_KAFKA_TOPIC_PREFIX": prefix, "QI_KAFKA_CLIENT_ID": f"qi-{prefix.rstrip('.')}",
                "QI_RUNNER_SESSION_TIMEOUT_MS": "3000", "QI_RUNNER_HEARTBEAT_INTERVAL_MS": "500",
                "QI_LOG_LEVEL": "info"})
    env.update(extra)
    return env


def start_worker(env: dict[str, str], log_path) -> subprocess.Popen:  # noqa: ANN001
    return subprocess.Popen([sys.executable, "-m", "qi", "worker", "score"], env=env, cwd=os.getcwd(),
                            stdout=log_path.open("ab"), stderr=subprocess.STDOUT)
