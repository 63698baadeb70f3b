"""A world for the API tests, flowing through real workers on the session stack.

The demo's labs, twins and certificates (one valid, one revoked, one forged, one outside its
lab's accreditation), 24 hours of one sensor's readings with scores and two alerts, published
to a fresh topic prefix; then the real workers (validate, project postgres / redis, warehouse,
audit) and `qi api` itself run as subprocesses until every read model holds the world.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from events.models import AnomalyDetected, AnomalyScored, SensorReading
from events.signing import HybridKeyPair
from qi.api.auth import Role, Tokens
from qi.demo.world import world_events
from qi.platform import Platform
from streams.ids import derived_id
from tests.conftest import ROOT

TOKEN_KEY = "test-api-token-secret-0123456789-abcdefghijklmnop"
TWIN, SENSOR = "gauge-0001", "s1"
READINGS = 24 * 60  # one a minute for 24 h
VALID, REVOKED, FORGED, UNACCREDITED = "DCC-DEMO-0001", "DCC-DEMO-0002", "DCC-DEMO-0004", "DCC-DEMO-0005"


@dataclass
class Proc:
    argv: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen | None = None

    def start(self) -> Proc:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "qi", *self.argv], cwd=ROOT, env=self.env,
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 30) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@dataclass
class World:
    platform: Platform
    env: dict[str, str]
    run_dir: Path
    url: str
    now: datetime
    procs: dict[str, Proc] = field(default_factory=dict)
    events: list = field(default_factory=list)
    tokens: Tokens = field(default_factory=lambda: Tokens(TOKEN_KEY.encode(), issuer="qi-stream"))

    def token(self, role: Role | str, subject: str = "tester") -> str:
        return self.tokens.issue(Role(role), subject, 3600)

    def client(self, role: Role | str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token(role)}"} if role else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def issued_event_id(self, certificate_id: str) -> str:
        return next(str(e.event_id) for e in self.events
                    if e.event_type == "CertificateIssued" and e.certificate_id == certificate_id)


def env_for(stack_env: dict[str, str], prefix: str, run_dir: Path, **extra: str) -> dict[str, str]:
    env = dict(stack_env)
    env.update({
        "QI_KAFKA_TOPIC_PREFIX": prefix, "QI_KAFKA_CLIENT_ID": "qi-" + prefix.strip("."),
        "QI_STACK_RUN_DIR": str(run_dir), "QI_CLICKHOUSE_DSN": f"chdb://{run_dir / 'chdb'}",
        "QI_AUDIT_KEY_DIR": str(run_dir / "keys"), "QI_AUDIT_HEAD_EVERY_S": "1",
        # a log of its own: other audit workers of the session sign into theirs with other keys
        "QI_AUDIT_PG_SCHEMA": "audit_" + "".join(c if c.isalnum() else "_" for c in prefix.lower()).strip("_"),
        "QI_RUNNER_SESSION_TIMEOUT_MS": "3000", "QI_RUNNER_HEARTBEAT_INTERVAL_MS": "300",
        "QI_VALIDATION_SESSION_TIMEOUT_S": "3", "QI_VALIDATION_HEARTBEAT_INTERVAL_S": "0.5",
        "QI_VALIDATION_RECHECK_INTERVAL_S": "0.5", "QI_VALIDATION_COMMIT_INTERVAL_S": "0.5",
        "QI_API_TOKEN_KEY": TOKEN_KEY, "QI_LOG_LEVEL": "info", "QI_LOG_FORMAT": "json",
        **extra,
    })
    return env


def sensor_events(now: datetime) -> list:
    """24 h of readings (one a minute, a spike at 12 h), a score per reading, an alert raised and cleared."""
    out = []
    start = now - timedelta(hours=24)
    spike = READINGS // 2
    for i in range(READINGS):
        t = start + timedelta(minutes=i)
        value = 100.0 + (i % 10) * 0.1 + (25.0 if i == spike else 0.0)
        r = SensorReading(event_id=derived_id("api-test-reading", i, now.isoformat()), occurred_at=t, source="t",
                          twin_id=TWIN, sensor_id=SENSOR, quantity="pressure", value=value, unit="kPa")
        score = 0.99 if i == spike else 0.05
        s = AnomalyScored(event_id=derived_id("api-test-score", r.event_id), occurred_at=t, source="t",
                          twin_id=TWIN, sensor_id=SENSOR, reading_event_id=r.event_id, value=value, score=score,
                          is_anomaly=i == spike, model_name="test", model_version="1")
        out += [r, s]
        if i in (spike, spike + 12):
            out.append(AnomalyDetected(event_id=derived_id("api-test-alert", i), occurred_at=t, source="t",
                                       twin_id=TWIN, sensor_id=SENSOR, state="RAISED" if i == spike else "CLEARED",
                                       score=score, threshold=0.5, reading_event_id=r.event_id, model_name="test",
                                       model_version="1"))
    return out


async def _publish(platform: Platform, events: list) -> None:
    serde = await platform.serde()
    async with platform.publisher(serde) as pub:
        await pub.publish_many(events)


def wait_until(what: str, predicate, timeout_s: float, procs: dict[str, Proc], every_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        dead = [n for n, p in procs.items() if not p.alive()]
        if dead:
            logs = "\n".join(f"--- {n}\n{procs[n].log.read_text(errors='replace')[-2000:]}" for n in dead)
            raise AssertionError(f"while waiting for {what}: {dead} exited\n{logs}")
        try:
            last = predicate()
        except (httpx.HTTPError, OSError, ValueError, KeyError) as e:
            last = e  # not there yet (a store still starting): keep waiting
        else:
            if last:
                return last
        time.sleep(every_s)
    raise AssertionError(f"{what}: not after {timeout_s:.0f} s (last: {last!r})")


def announced_url(run_dir: Path, instance: str = "api") -> str | None:
    try:
        return json.loads((run_dir / "health" / f"{instance}.json").read_text())["url"]
    except (OSError, ValueError, KeyError):
        return None


def start_world(platform: Platform, stack_env: dict[str, str], run_dir: Path, **api_env: str) -> World:
    prefix = platform.settings.kafka.topic_prefix
    env = env_for(stack_env, prefix, run_dir, **api_env)
    HybridKeyPair.generate(key_id="api-test-log/1").save(run_dir / "keys", "audit-log")
    asyncio.run(platform.ensure_topics())
    asyncio.run(platform.ensure_validation_topics())
    procs = {name: Proc(argv, env, run_dir / f"{name}.log") for name, argv in {
        "validate": ["worker", "validate"],
        "project-postgres": ["worker", "project", "--sink", "postgres"],
        "project-redis": ["worker", "project", "--sink", "redis"],
        "warehouse": ["worker", "warehouse"],
        "audit": ["worker", "audit"],
        "api": ["api"],
    }.items()}
    for p in procs.values():
        p.start()
    now = datetime.now(UTC).replace(microsecond=0)
    events = world_events(run_dir / "demo-keys") + sensor_events(now)
    asyncio.run(_publish(platform, events))
    url = wait_until("the API announces its URL", lambda: announced_url(run_dir), 90, procs)
    world = World(platform, env, run_dir, url, now, procs, events)
    admin = world.client(Role.admin)
    certs = (VALID, REVOKED, FORGED, UNACCREDITED)

    def registry_ready():
        got = {c: admin.get(f"/certificates/{c}").json().get("status") for c in certs}
        return got if got == {VALID: "valid", REVOKED: "revoked", FORGED: "invalid", UNACCREDITED: "invalid"} else None

    wait_until("validations projected into the registry", registry_ready, 180, procs)
    wait_until("the lookups hold the revocation", lambda: admin.get(f"/verify/{REVOKED}").json()["status"] == "revoked",
               60, procs)
    wait_until("every reading in the warehouse", lambda: sum(
        p["n"] for p in admin.get(f"/sensors/{TWIN}/{SENSOR}/readings",
                                  params={"from": (now - timedelta(hours=25)).isoformat(),
                                          "to": (now + timedelta(hours=1)).isoformat(),
                                          "max_points": 5000}).json()["points"]) == READINGS, 180, procs)
    wait_until("a signed head covering the certificates", lambda: all(
        admin.get(f"/verify/{c}").json()["proof"] is not None for c in certs), 120, procs)
    admin.close()
    return world


def stop_world(world: World) -> dict[str, bool]:
    alive = {n: p.alive() for n, p in world.procs.items()}
    for p in world.procs.values():
        p.stop()
    return alive


__all__ = ["World", "start_world", "stop_world", "os"]
