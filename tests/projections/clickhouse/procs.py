"""Projector and `qi sql` as real subprocesses (the embedded engine allows one owner process)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT


def publish_events(platform, events) -> None:
    """Create the topics and publish ``events`` through the platform's publisher (every one acknowledged)."""
    async def go() -> None:
        await platform.ensure_topics()
        serde = await platform.serde()
        async with platform.publisher(serde) as pub:
            await pub.publish_many(events)
    asyncio.run(go())


def warehouse_env(stack_env: dict[str, str], *, prefix: str, run_dir: Path, chdb_dir: Path,
                  database: str = "qi") -> dict[str, str]:
    env = dict(stack_env)
    env.update({"QI_KAFKA_TOPIC_PREFIX": prefix, "QI_KAFKA_CLIENT_ID": "qi-" + prefix.strip("."), "QI_STACK_RUN_DIR": str(run_dir),
                "QI_CLICKHOUSE_DSN": f"chdb://{chdb_dir}", "QI_CLICKHOUSE_DATABASE": database,
                "QI_RUNNER_SESSION_TIMEOUT_MS": "3000", "QI_RUNNER_HEARTBEAT_INTERVAL_MS": "300"})
    return env


def start_projector(env: dict[str, str], log: Path) -> subprocess.Popen:
    out = open(log, "ab")
    try:
        return subprocess.Popen([sys.executable, "-m", "qi", "worker", "warehouse"], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    finally:
        out.close()


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout_s: float = 30) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    return proc.wait(timeout_s)


def qi_sql(env: dict[str, str], query: str, *, fmt: str = "json", check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "qi", "sql", "--format", fmt, query], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError(f"qi sql failed ({p.returncode}): {p.stderr[-2000:]}")
    return p


def sql_rows(env: dict[str, str], query: str) -> list[dict]:
    return json.loads(qi_sql(env, query).stdout)


def wait_until(predicate, timeout_s: float = 90.0, every_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(every_s)
    raise AssertionError(f"condition not met in {timeout_s}s (last: {last!r})")
