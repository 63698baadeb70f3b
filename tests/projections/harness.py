"""Reusable pieces for projection tests: encode events as the runner hands them over, run a
projector subprocess (``qi worker project --sink KIND``), SIGKILL it, wait for catch-up, and
compare a sink's snapshot with the state computed by ``tests.projections.world.expected``.

A sink kind whose ``qi worker project --sink KIND`` runs a framework projection plugs into the
world, crash and rebuild tests by adding ``KIND: projection`` to ``PROJECTION_OF`` (the contract
tests take every kind of ``tests.projections.sinks.SINK_KINDS``)."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from events.reader import ConsumedRecord
from events.registry import BuiltinRegistry
from events.serde import Serde
from events.topics import TopicNames
from projections.framework import Sink
from projections.registry import LOOKUPS, REGISTRY
from tests.conftest import ROOT

PROJECTION_OF = {"postgres": REGISTRY, "redis": LOOKUPS}


async def offline_serde(catalog) -> Serde:
    serde = Serde(catalog, BuiltinRegistry(catalog), TopicNames(""))
    await serde.prepare()
    return serde


def consumed(serde: Serde, events, *, partitions: int = 3) -> list[ConsumedRecord]:
    """Events as the runner hands them over (plain decode), offsets per topic/partition by key."""
    topics = TopicNames("")
    nxt: dict[tuple[str, int], int] = {}
    out = []
    for e in events:
        tp = (topics.topic(e.TOPIC_FAMILY), sum(e.key().encode()) % partitions)
        off = nxt.get(tp, 0)
        nxt[tp] = off + 1
        value = serde.encode_event(e)
        out.append(ConsumedRecord(tp[0], tp[1], off, 0, e.key().encode(), value, serde.decode(value, plain=True), None))
    return out


def diff(got: dict, want: dict, limit: int = 5) -> list[str]:
    """Human-readable differences between two snapshots (missing, extra, different rows)."""
    out = []
    for table in sorted(set(got) | set(want)):
        g, w = got.get(table, {}), want.get(table, {})
        missing = [k for k in w if k not in g]
        extra = [k for k in g if k not in w]
        wrong = [k for k in w if k in g and g[k] != w[k]]
        if missing or extra or wrong:
            out.append(f"{table}: {len(missing)} missing {missing[:limit]}, {len(extra)} extra {extra[:limit]}, "
                       f"{len(wrong)} different " + "; ".join(f"{k}: got {g[k]} want {w[k]}" for k in wrong[:2]))
    return out


def projector_env(stack_env: dict[str, str], *, prefix: str, run_dir: Path, **extra: str) -> dict[str, str]:
    env = dict(stack_env)
    env.update({"QI_KAFKA_TOPIC_PREFIX": prefix, "QI_KAFKA_CLIENT_ID": "qi-" + prefix.strip("."),
                "QI_STACK_RUN_DIR": str(run_dir), "QI_RUNNER_SESSION_TIMEOUT_MS": "3000",
                "QI_RUNNER_HEARTBEAT_INTERVAL_MS": "300", **extra})
    return env


def start_projector(env: dict[str, str], kind: str, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "qi", "worker", "project", "--sink", kind], cwd=ROOT,
                                env=env, stdout=out, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout_s: float = 30) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    return proc.wait(timeout_s)


def wait_until(predicate, timeout_s: float = 90.0, every_s: float = 0.25):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(every_s)
    raise AssertionError(f"condition not met in {timeout_s}s (last: {last!r})")


def log_size(log: Path) -> int:
    return log.stat().st_size if log.exists() else 0


def log_has(log: Path, text: str, since: int) -> bool:
    with open(log, "rb") as f:
        f.seek(since)
        return text.encode() in f.read()


def kill_repeatedly(env: dict[str, str], kind: str, log: Path, *, kills: int, rnd: random.Random,
                    progress=lambda: 0, min_s: float = 0.2, max_s: float = 2.0) -> list[int]:
    """Start the projector and SIGKILL it ``kills`` times at random points after it joined;
    returns the progress observed after each kill (so a test can show it advanced)."""
    seen = []
    for _ in range(kills):
        mark = log_size(log)
        proc = start_projector(env, kind, log)
        try:
            wait_until(lambda: log_has(log, "runner.assigned", mark), timeout_s=60, every_s=0.05)
            time.sleep(rnd.uniform(min_s, max_s))
        finally:
            assert stop(proc, signal.SIGKILL) == -signal.SIGKILL
        seen.append(progress())
    return seen


def sink_positions(sink_factory) -> dict:
    async def go():
        s: Sink = sink_factory()
        try:
            return await s.positions()
        finally:
            await s.close()
    return asyncio.run(go())


def sink_snapshot(sink_factory) -> dict:
    async def go():
        s: Sink = sink_factory()
        try:
            return await s.snapshot()
        finally:
            await s.close()
    return asyncio.run(go())
