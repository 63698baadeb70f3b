"""Driving `qi worker validate` subprocesses against the session stack, and reading what they emit."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from events.publisher import OutgoingRecord
from qi.platform import Platform

ROOT = Path(__file__).resolve().parents[3]


def worker_env(stack_env: dict[str, str], prefix: str, **extra: str) -> dict[str, str]:
    env = dict(stack_env)
    env.update({
        "QI_KAFKA_TOPIC_PREFIX": prefix,
        "QI_KAFKA_PARTITIONS": "3",
        "QI_VALIDATION_SESSION_TIMEOUT_S": "3",
        "QI_VALIDATION_HEARTBEAT_INTERVAL_S": "0.5",
        "QI_VALIDATION_RECHECK_INTERVAL_S": "0.5",
        "QI_VALIDATION_COMMIT_INTERVAL_S": "0.5",
        "QI_LOG_LEVEL": os.environ.get("QI_TEST_WORKER_LOG_LEVEL", "warning"),
        **extra,
    })
    return env


class WorkerProcess:
    """One `python -m qi worker validate` process; its output goes to a log file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "qi", "worker", "validate"], cwd=ROOT, env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Outputs:
    """Everything the worker produced, read incrementally from validations, alerts and dead letters."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.validated: dict[str, list[dict[str, Any]]] = defaultdict(list)  # causation_id -> verdicts
        self.expiring: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.dead: dict[tuple[str, int, int], list[dict[str, Any]]] = defaultdict(list)
        self._reader = None
        self._polling = asyncio.Lock()  # several waiters may poll at once (producer and killer)

    async def __aenter__(self) -> Outputs:
        serde = await self.platform.serde()
        self._reader = self.platform.reader(serde, ["validations", "alerts", "deadletter"])
        await self._reader.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._reader.close()

    async def poll(self) -> None:
        async with self._polling:
            await self._poll()

    async def _poll(self) -> None:
        async for batch in self._reader.batches(timeout_ms=200):
            for r in batch:
                ev = r.decoded.record
                if r.decoded.event_type == "CertificateValidated":
                    self.validated[ev["causation_id"]].append(ev)
                elif r.decoded.event_type == "CertificateExpiring":
                    self.expiring[ev["certificate_id"]].append(ev)
                elif r.decoded.event_type == "DeadLetter":
                    self.dead[(ev["source_topic"], ev["source_partition"], ev["source_offset"])].append(ev)
            if not batch:
                return

    async def until(self, predicate, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            await self.poll()
            if predicate():
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the worker did not produce the expected outputs in time "
                                     f"({len(self.validated)} inputs judged, {len(self.dead)} dead letters)")
            await asyncio.sleep(0.2)

    def verdict(self, event) -> dict[str, Any]:
        [v] = self.validated[str(event.event_id)][:1]
        return v


async def publish(platform: Platform, *events) -> list:
    serde = await platform.serde()
    async with platform.publisher(serde) as pub:
        return await pub.publish_many(events)


async def publish_raw(platform: Platform, records: list[OutgoingRecord]) -> list:
    serde = await platform.serde()
    async with platform.publisher(serde) as pub:
        return await pub.publish_records(records)
