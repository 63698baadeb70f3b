"""`qi stack up|status|down` on a stack of its own (the session stack must survive it)."""

import subprocess
import sys

import psutil
import pytest

from qi.stack import LocalStack

pytestmark = pytest.mark.stack


def qi(run_dir, *args):
    env = {"PATH": "/usr/bin:/bin", "QI_STACK_RUN_DIR": str(run_dir), "QI_LOG_FORMAT": "json"}
    return subprocess.run([sys.executable, "-m", "qi", "stack", *args], env=env, capture_output=True, text=True,
                          timeout=180)


def ours(run_dir):
    """Every live process whose command line names this run directory (servers and their children)."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if p.info["status"] != psutil.STATUS_ZOMBIE and any(str(run_dir) in a for a in p.info["cmdline"] or []):
                found.append(p)
        except psutil.Error:
            continue
    return found


def test_up_is_idempotent_status_is_healthy_and_down_leaves_nothing(tmp_path, local_stack):
    run_dir = tmp_path / "stack"
    try:
        _up_status_down(run_dir, local_stack)
    finally:
        LocalStack(run_dir).down(purge=True)  # also on failure: never leak servers


def _up_status_down(run_dir, local_stack):
    up = qi(run_dir, "up")
    assert up.returncode == 0, up.stderr
    for name in ("s3", "kafka", "postgres", "redis", "mqtt", "schema-registry", "clickhouse"):
        assert name in up.stdout
    assert "topics: 9 (9 created)" in up.stdout

    stack = LocalStack(run_dir)
    pids = {n: s.process.pid for n, s in stack.load_state().services.items()}
    children = [c.pid for pid in pids.values() for c in psutil.Process(pid).children(recursive=True)]
    assert set(pids) == {"s3", "kafka", "postgres", "redis", "mqtt", "schema-registry"}

    again = qi(run_dir, "up")
    assert again.returncode == 0 and "topics: 9 (0 created)" in again.stdout
    assert {n: s.process.pid for n, s in stack.load_state().services.items()} == pids

    status = qi(run_dir, "status")
    assert status.returncode == 0, status.stdout
    assert status.stdout.count(" ok ") == 7

    down = qi(run_dir, "down")
    assert down.returncode == 0, down.stderr
    for pid in [*pids.values(), *children]:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert ours(run_dir) == []
    assert (run_dir / "data" / "s3").is_dir() and (run_dir / "data" / "postgres" / "pgdata").is_dir()
    assert qi(run_dir, "status").returncode == 1

    purge = qi(run_dir, "down", "--purge")
    assert purge.returncode == 0, purge.stderr
    assert not (run_dir / "data").exists()

    # never others: the session stack is untouched
    assert local_stack.is_up()


def test_down_spares_a_process_that_took_a_recorded_pid(tmp_path):
    """A pid in the state file whose start time differs is not ours: it is left alone."""
    stack = LocalStack(tmp_path / "s")
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        state_file = stack.state_file
        state_file.parent.mkdir(parents=True)
        state_file.write_text(
            '{"services": {"kafka": {"port": 1, "url": "x", "process": '
            f'{{"pid": {victim.pid}, "create_time": 1.0, "argv": ["tansu"], "log": "l"}}}}}}}}'
        )
        results = stack.down()
        assert [r.was_running for r in results] == [False]
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()
