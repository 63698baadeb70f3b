"""The validator's /ready: false while it is far behind on certificates, true at lag 0, with the
same counters on /metrics as the batch workers."""

from __future__ import annotations

import asyncio
import json
import os
import time

import httpx
import pytest

from qi.platform import Platform
from tests.conftest import make_settings
from tests.streams.validation import world as w
from tests.streams.validation.stack import WorkerProcess, publish, worker_env

pytestmark = pytest.mark.stack
BACKLOG, MAX_LAG = 6000, 100


def test_ready_is_false_while_far_behind_and_true_once_caught_up(local_stack, stack_env, tmp_path) -> None:
    prefix = f"vr{os.getpid()}."
    platform = Platform(make_settings(local_stack, prefix))
    asyncio.run(platform.ensure_topics())
    certs = [w.certificate(w.uid("R"), "lab", "lab/1", "tw-1") for _ in range(BACKLOG)]
    asyncio.run(publish(platform, w.register("lab", "lab/1", ["calibration.pressure"]), w.twin("tw-1"), *certs))
    worker = WorkerProcess(worker_env(stack_env, prefix, QI_RUNNER_READY_MAX_LAG=str(MAX_LAG)),
                           tmp_path / "worker.log")
    worker.start()
    try:
        announce = local_stack.run_dir / "health" / f"validate-{worker.proc.pid}.json"
        seen_behind, trail = None, []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert worker.alive(), worker.log()[-3000:]
            if announce.exists():
                url = json.loads(announce.read_text())["url"]
                try:
                    h = httpx.get(f"{url}/health", timeout=2).json()
                except httpx.HTTPError:
                    h = {}
                trail.append((h.get("ready"), h.get("lag"), h.get("reason")))
                if h.get("lag", 0) > MAX_LAG and not h.get("ready"):
                    seen_behind = seen_behind or h
                    assert httpx.get(f"{url}/ready", timeout=2).status_code == 503
                if h.get("ready") and h.get("lag") == 0 and seen_behind:
                    break
            time.sleep(0.2)
        else:
            raise AssertionError(f"never both behind and caught up: behind={seen_behind}\n{sorted(set(trail), key=str)[:20]}\n" + worker.log()[-2000:])
        assert "behind" in seen_behind["reason"]
        assert httpx.get(f"{url}/ready", timeout=2).status_code == 200
        metrics = httpx.get(f"{url}/metrics", timeout=2).text
        consumed = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                       if line.startswith("qi_events_consumed_total{") and f'topic="{prefix}qi.certificates.v1"' in line)
        assert consumed == BACKLOG
    finally:
        worker.stop()
