"""Restart to ready under `qi up`: a SIGKILLed worker is ready again within a bound.

A fleet of its own (memory log; score and the Redis projector only, to keep it short) with warm
spares (docs/decisions/0074): once each instance's spare waits at its gate, the instance is
SIGKILLed; the supervisor promotes the spare, which evicts the dead member from the consumer group
(0073), joins, and answers /ready. The bound is generous for a shared CI machine; the benchmark
(bench/platform.py) reports the real figure. Then readings published after the restart reach the
Redis read model: the promoted process does the work, not just answers /ready.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from qi.fleet import probe
from qi.fleet.supervisor import load_state
from tests.qi.run import qi

pytestmark = pytest.mark.stack
WORKERS = ("score", "project-redis")
READY_BOUND_S = 10.0


@pytest.fixture
def fleet_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("QI_")}
    others = {w: 0 for w in ("validate", "project-postgres", "project-clickhouse", "audit", "bridge", "api")}
    env.update({"QI_STACK_RUN_DIR": str(tmp_path / "run"), "QI_LOG_FORMAT": "json",
                "QI_STACK_LOG_STORAGE": "memory", "QI_FLEET_INSTANCES": json.dumps(others)})
    yield env
    qi(env, "down", "--purge", timeout=180)


def _publish_and_read(env, run_dir: Path, sensor: str) -> None:
    """One reading on a sensor of its own, seen in the Redis read model (bounded wait)."""
    from events.publisher import OutgoingRecord
    from projections.redis_sink import Lookups
    from projections.registry import PROJECTIONS
    from qi.config import Settings
    from qi.platform import Platform

    async def go():
        settings = Settings.from_env()
        settings = settings.model_copy(update={"stack": settings.stack.model_copy(update={"run_dir": run_dir})})
        platform = Platform(settings)
        serde = await platform.serde()
        now = datetime.now(UTC)
        value = serde.encode("SensorReading", {
            "event_id": uuid.uuid4(), "event_type": "SensorReading", "occurred_at": now, "recorded_at": now,
            "source": "test-restart", "correlation_id": None, "causation_id": None, "twin_id": "restart-twin",
            "sensor_id": sensor, "quantity": "temperature", "value": 21.5, "unit": "degC"})
        async with platform.publisher(serde) as pub:
            await pub.publish_records([OutgoingRecord(platform.topics.topic("readings"),
                                                      f"restart-twin/{sensor}".encode(), value)])
        lookups = Lookups(platform.endpoints().redis or "", PROJECTIONS["lookups"])
        await lookups.start()
        try:
            deadline = time.monotonic() + 60
            while (await lookups.sensor("restart-twin", sensor))["reading"] is None:
                assert time.monotonic() < deadline, f"reading of {sensor} not in the read model after 60 s"
                await asyncio.sleep(0.1)
        finally:
            await lookups.close()
    asyncio.run(go())


@pytest.mark.timeout(900)
def test_a_killed_worker_is_ready_again_within_the_bound(fleet_env):
    env = fleet_env
    run_dir = Path(env["QI_STACK_RUN_DIR"])
    up = qi(env, "up", "--wait", "120")
    assert up.returncode == 0, up.stdout + up.stderr
    assert sorted(load_state(run_dir).instances) == sorted(WORKERS)
    probe.wait_ready(run_dir, list(WORKERS), timeout_s=300)
    _publish_and_read(env, run_dir, "before")
    for name in WORKERS:
        spare = probe.wait_spares(run_dir, [name], timeout_s=300)[name]
        victim = load_state(run_dir).instances[name].pid
        os.kill(victim, signal.SIGKILL)
        took = probe.wait_restarted(run_dir, name, victim, timeout_s=120)
        assert took < READY_BOUND_S, f"{name} ready again only after {took:.1f} s"
        st = load_state(run_dir).instances[name]
        assert st.pid == spare and st.restarts == 1, st
    # the promoted processes do the work: a reading published now is scored and projected
    _publish_and_read(env, run_dir, "after")
    probe.wait_ready(run_dir, list(WORKERS), timeout_s=120, caught_up=True)


@pytest.mark.timeout(600)
def test_the_apis_warm_spare_waits_unannounced_and_takes_over(tmp_path):
    """The API's spare waits at its gate like every worker's: it neither listens nor announces a URL
    until promoted (it used to serve as a second API and take over health/api.json)."""
    import httpx

    env = {k: v for k, v in os.environ.items() if not k.startswith("QI_")}
    others = {w: 0 for w in ("validate", "score", "project-postgres", "project-redis", "project-clickhouse",
                             "audit", "bridge")}
    env.update({"QI_STACK_RUN_DIR": str(tmp_path / "run"), "QI_LOG_FORMAT": "json",
                "QI_STACK_LOG_STORAGE": "memory", "QI_FLEET_INSTANCES": json.dumps(others)})
    run_dir = tmp_path / "run"
    try:
        up = qi(env, "up", "--wait", "120")
        assert up.returncode == 0, up.stdout + up.stderr
        probe.wait_ready(run_dir, ["api"], timeout_s=300)
        spare = probe.wait_spares(run_dir, ["api"], timeout_s=300)["api"]
        primary = load_state(run_dir).instances["api"].pid
        announced = json.loads((run_dir / "health" / "api.json").read_text())
        assert announced["pid"] == primary != spare
        log = Path(load_state(run_dir).instances["api"].log).read_text()
        assert sum('"api.listening"' in line for line in log.splitlines()) == 1  # the spare did not serve
        os.kill(primary, signal.SIGKILL)
        took = probe.wait_restarted(run_dir, "api", primary, timeout_s=120)
        assert took < READY_BOUND_S, f"api ready again only after {took:.1f} s"
        assert load_state(run_dir).instances["api"].pid == spare
        announced = json.loads((run_dir / "health" / "api.json").read_text())
        assert announced["pid"] == spare
        assert httpx.get(announced["url"] + "/live", timeout=10).status_code == 200
    finally:
        qi(env, "down", "--purge", timeout=180)
