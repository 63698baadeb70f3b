"""The README's first command, as a new user runs it: `qi up`, `qi demo` (twice), `qi ps`, a killed
worker coming back, `qi down`. A fresh stack in its own run directory, every worker a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.stack
ROOT = Path(__file__).resolve().parents[2]


def qi(env, *args, timeout=600):
    return subprocess.run([sys.executable, "-m", "qi", *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def fresh_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("QI_")}
    env.update({"QI_STACK_RUN_DIR": str(tmp_path / "run"), "QI_LOG_FORMAT": "json",
                "QI_RUNNER_SESSION_TIMEOUT_MS": "6000", "QI_VALIDATION_SESSION_TIMEOUT_S": "6",
                "QI_AUDIT_HEAD_EVERY_S": "2"})
    yield env
    qi(env, "down", "--purge", timeout=180)


def _fleet(env) -> dict:
    return json.loads((Path(env["QI_STACK_RUN_DIR"]) / "fleet.json").read_text())["instances"]


def _our_processes(run_dir: Path) -> list[psutil.Process]:
    mine = []
    for p in psutil.process_iter(["cmdline", "environ"]):
        try:
            if p.info["environ"] and p.info["environ"].get("QI_STACK_RUN_DIR") == str(run_dir):
                mine.append(p)
        except psutil.Error:
            continue
    return mine


@pytest.mark.timeout(900)
def test_up_demo_twice_ps_supervision_and_down(fresh_env):
    env = fresh_env
    run_dir = Path(env["QI_STACK_RUN_DIR"])
    up = qi(env, "up")
    assert up.returncode == 0, up.stdout + up.stderr
    first = qi(env, "demo")
    assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-3000:]
    out = first.stdout
    assert "DCC-DEMO-0004  INVALID" in out and "signature" in out
    assert "1200 of 1200 readings scored" in out
    assert "verified with the log's public keys only" in out

    second = qi(env, "demo")
    assert second.returncode == 0, second.stdout[-6000:] + second.stderr[-3000:]
    # nothing doubled: the same events, the same ids, the same read-model counts
    counts = [line for line in out.splitlines() if line.startswith("  read model")]
    assert counts == [line for line in second.stdout.splitlines() if line.startswith("  read model")]

    ps = qi(env, "ps")
    assert ps.returncode == 0, ps.stdout
    victim = _fleet(env)["score"]
    os.kill(victim["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = _fleet(env)["score"]
        if now["state"] == "running" and now["pid"] != victim["pid"]:
            break
        time.sleep(0.5)
    assert now["restarts"] == 1 and now["pid"] != victim["pid"]
    ps = qi(env, "ps")
    assert "score" in ps.stdout and ps.returncode == 0

    down = qi(env, "down", timeout=180)
    assert down.returncode == 0, down.stderr
    time.sleep(1)
    assert not [p for p in _our_processes(run_dir) if p.status() != psutil.STATUS_ZOMBIE]
