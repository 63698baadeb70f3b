"""The validator's /ready: false while it is far behind on certificates, true at lag 0, with the
same counters on /metrics as the batch workers."""

from __future__ import annotations

import asyncio
import os

import pytest

from qi.fleet import probe
from qi.platform import Platform
from tests.conftest import make_settings
from tests.projections.harness import wait_until
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
        run_dir, instance = local_stack.run_dir, f"validate-{worker.proc.pid}"
        seen: list[dict] = []

        def behind_then_caught_up() -> bool:
            assert worker.alive(), worker.log()[-3000:]
            try:  # one answer for both the document and the status: two probes would race the worker
                r = probe.get(run_dir, instance, "/ready", 2)
            except probe.NoAnswer:
                return False
            h = r.json()
            assert r.status_code == (200 if h.get("ready") else 503), (r.status_code, h)
            # far behind and saying so (before every partition has answered a fetch, the reason is
            # "log end unknown" even with a lag figure above the bound: not the state tested here)
            if h.get("lag", 0) > MAX_LAG and not h.get("ready") and "behind" in h.get("reason", ""):
                seen.append(h)
            return bool(seen) and h.get("ready") and h.get("lag") == 0

        wait_until(behind_then_caught_up, timeout_s=300, every_s=0.2)  # 6,000 judgements: minutes on a loaded 2-core box
        assert seen[0]["lag"] > MAX_LAG and seen[0]["ready"] is False
        assert probe.is_ready(run_dir, instance, caught_up=True)
        m = probe.metrics(run_dir, instance)
        assert probe.total(m, "qi_events_consumed_total", topic=f"{prefix}qi.certificates.v1") == BACKLOG
    finally:
        worker.stop()
