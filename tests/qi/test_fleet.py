"""The supervisor with real child processes: restarts with backoff, clean stop, state for `qi ps`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil

from qi.fleet.spec import WorkerSpec, fleet
from qi.fleet.supervisor import load_state

SLEEPER = (sys.executable, "-c", "import time\nwhile True: time.sleep(1)")
# Ignores SIGTERM: the supervisor must SIGKILL it after the grace period.
STUBBORN = (sys.executable, "-c",
            "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True: time.sleep(1)")


def _start_supervisor(tmp_path, specs_code: str) -> subprocess.Popen:
    code = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from qi.fleet.spec import WorkerSpec\n"
        "from qi.fleet.supervisor import Supervisor\n"
        f"specs = {specs_code}\n"
        f"asyncio.run(Supervisor(specs, run_dir=Path({str(tmp_path)!r}), grace_s=1.0).run())\n"
    )
    return subprocess.Popen([sys.executable, "-c", code], cwd=os.getcwd())


def _wait(pred, timeout_s=20.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_a_killed_worker_is_restarted_and_stop_leaves_nothing_running(tmp_path):
    specs = f"[WorkerSpec('sleeper', {SLEEPER!r}, instances=2), WorkerSpec('stubborn', {STUBBORN!r})]"
    sup = _start_supervisor(tmp_path, specs)
    try:
        state = _wait(lambda: (s := load_state(tmp_path)) and len(s.instances) == 3
                      and all(i.state == "running" for i in s.instances.values()) and s)
        assert sorted(state.instances) == ["sleeper-1", "sleeper-2", "stubborn"]
        victim = state.instances["sleeper-1"].pid
        os.kill(victim, signal.SIGKILL)
        restarted = _wait(lambda: (s := load_state(tmp_path)) and s.instances["sleeper-1"].state == "running"
                          and s.instances["sleeper-1"].pid not in (None, victim) and s)
        assert restarted.instances["sleeper-1"].restarts == 1
        assert restarted.instances["sleeper-1"].last_exit == -signal.SIGKILL
        assert restarted.instances["sleeper-2"].restarts == 0
        pids = [i.pid for i in restarted.instances.values()]
    finally:
        sup.send_signal(signal.SIGTERM)
        sup.wait(timeout=30)
    assert sup.returncode == 0
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    final = load_state(tmp_path)
    assert all(i.state == "stopped" and i.pid is None for i in final.instances.values())


def test_a_crash_looping_worker_backs_off(tmp_path):
    crash = (sys.executable, "-c", "raise SystemExit(3)")
    sup = _start_supervisor(tmp_path, f"[WorkerSpec('crash', {crash!r})]")
    try:
        time.sleep(4.0)
        state = load_state(tmp_path)
    finally:
        sup.send_signal(signal.SIGTERM)
        sup.wait(timeout=30)
    inst = state.instances["crash"]
    assert inst.last_exit == 3
    # the first restart at once, then 1 s, 2 s, 4 s...: in 4 s at most 4 restarts, not hundreds
    assert 1 <= inst.restarts <= 4


def test_fleet_spec_instance_counts():
    specs = {s.name: s for s in fleet({"score": 3, "bridge": 0, "project-clickhouse": 4}, bridge_config="b.toml")}
    assert "bridge" not in specs
    assert specs["score"].instance_names() == ["score-1", "score-2", "score-3"]
    assert specs["project-clickhouse"].instances == 1  # chDB: one process per data directory
    assert specs["validate"].argv()[-2:] == ["worker", "validate"]


# A worker that honours the standby protocol: as a spare (QI_RUNNER_STANDBY) it waits for the
# promotion line on stdin (exits on EOF), then announces its health file and runs.
SPARE_AWARE = (sys.executable, "-c", (
    "import json, os, sys, time\n"
    "from pathlib import Path\n"
    "if os.environ.get('QI_RUNNER_STANDBY') == 'true':\n"
    "    if sys.stdin.buffer.readline() != b'promote\\n': sys.exit(0)\n"
    "p = Path(sys.argv[1]) / 'health' / (os.environ['QI_RUNNER_INSTANCE'] + '.json')\n"
    "p.parent.mkdir(parents=True, exist_ok=True)\n"
    "p.write_text(json.dumps({'url': 'http://127.0.0.1:1', 'pid': os.getpid()}))\n"
    "while True: time.sleep(1)\n"))


def test_a_killed_worker_is_replaced_by_its_warm_spare_at_once(tmp_path):
    specs = f"[WorkerSpec('w', {(*SPARE_AWARE, str(tmp_path))!r}, standby=True)]"
    sup = _start_supervisor(tmp_path, specs)
    try:
        first = _wait(lambda: (s := load_state(tmp_path)) and s.instances["w"].standby_pid and s).instances["w"]
        spare = first.standby_pid
        assert spare != first.pid and psutil.pid_exists(spare)
        os.kill(first.pid, signal.SIGKILL)
        t0 = time.monotonic()
        after = _wait(lambda: (s := load_state(tmp_path)) and s.instances["w"].pid == spare
                      and s.instances["w"].state == "running" and s).instances["w"]
        assert time.monotonic() - t0 < 2.0, "the spare takes over without a backoff or a cold start"
        assert after.restarts == 1 and after.last_exit == -signal.SIGKILL
        # the promoted spare runs the instance (it announced itself) and gets a spare of its own
        _wait(lambda: json.loads((tmp_path / "health" / "w.json").read_text())["pid"] == spare)
        again = _wait(lambda: (s := load_state(tmp_path)) and s.instances["w"].standby_pid
                      and s.instances["w"].standby_pid != spare and s).instances["w"]
        pids = [again.pid, again.standby_pid]
    finally:
        sup.send_signal(signal.SIGTERM)
        sup.wait(timeout=30)
    assert sup.returncode == 0
    for pid in pids:  # the active and its spare are both gone
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    final = load_state(tmp_path).instances["w"]
    assert final.state == "stopped" and final.pid is None and final.standby_pid is None
