"""Several API processes on one port (qi/api/processes.py, decision 0128): each accepts on its own
SO_REUSEPORT socket, so connections spread over all of them; a dead process is started again on its
socket; SIGTERM stops them all, and none outlives a parent killed by pid."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from qi.api.processes import reuse_port_sockets
from tests.projections.harness import wait_until

ROOT = Path(__file__).resolve().parents[2]
SERVE = """
import sys
from qi.api.processes import ApiProcesses, reuse_port_sockets
socks = reuse_port_sockets("127.0.0.1", 0, 2)
print(socks[0].getsockname()[1], flush=True)
ApiProcesses(socks, "tests.api.pid_app:make", grace_s=3, restart_pause_s=0.2).run()
"""


def _until(what, predicate, timeout_s: float = 30):
    try:
        return wait_until(predicate, timeout_s=timeout_s, every_s=0.05)
    except AssertionError as e:
        raise AssertionError(f"{what}: {e}") from None


def _ask(port: int) -> int | None:
    """The pid of the process that answers a request on a new connection (None while none does)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
    except OSError:
        return None
    return int(data.rsplit(b"\r\n\r\n", 1)[1]) if data.startswith(b"HTTP/1.1 200") else None


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if int(f[1].split(":")[1], 16) == port and f[3] == "0A":  # 0A: LISTEN
            inodes.add(f[9])
    return inodes


def _socket_inodes(pid: int) -> set[str]:
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            link = os.readlink(fd)
        except OSError:
            continue
        if link.startswith("socket:["):
            out.add(link[8:-1])
    return out


@pytest.fixture
def served():
    proc = subprocess.Popen([sys.executable, "-c", SERVE], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    seen: set[int] = set()
    try:
        port = int(proc.stdout.readline())
        yield proc, port, seen
    finally:
        with contextlib.suppress(psutil.NoSuchProcess):
            seen.update(c.pid for c in psutil.Process(proc.pid).children(recursive=True))
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for pid in seen:  # only this server's processes (the session's workers are children of pytest too)
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()


def _children(proc, seen: set[int]) -> list[int]:
    try:
        kids = [c.pid for c in psutil.Process(proc.pid).children() if c.status() != psutil.STATUS_ZOMBIE
                and "spawn_main" in " ".join(c.cmdline())]
    except psutil.NoSuchProcess:
        return []
    seen.update(kids)
    return kids


def test_each_process_accepts_on_its_own_socket_and_connections_spread_over_them(served) -> None:
    proc, port, seen = served
    kids = _until("two API processes", lambda: len(_children(proc, seen)) == 2 and _children(proc, seen))
    _until("both answering", lambda: {_ask(port) for _ in range(20)} == set(kids))
    listening = _listening_inodes(port)
    assert len(listening) == 2  # two sockets in the SO_REUSEPORT group, not one shared
    own = [_socket_inodes(k) & listening for k in kids]
    assert all(len(o) == 1 for o in own) and own[0] != own[1]  # each child holds its own
    # keep-alive clients connect once: the kernel hashes each connection to one socket
    answers = [_ask(port) for _ in range(200)]
    assert None not in answers
    shares = [answers.count(k) for k in kids]
    assert min(shares) >= 50, shares  # ~100 each; a shared queue under no load can give any split


def test_a_dead_process_is_started_again_on_its_socket_and_sigterm_stops_all(served) -> None:
    proc, port, seen = served
    kids = _until("two API processes", lambda: len(_children(proc, seen)) == 2 and _children(proc, seen))
    os.kill(kids[0], signal.SIGKILL)
    again = _until("a new process in its place",
                   lambda: (k := _children(proc, seen)) and len(k) == 2 and kids[0] not in k and k)
    _until("the new one answering", lambda: {_ask(port) for _ in range(40)} == set(again))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    assert not [k for k in again if psutil.pid_exists(k) and psutil.Process(k).status() != psutil.STATUS_ZOMBIE]
    assert _ask(port) is None


def test_no_process_outlives_a_parent_killed_by_pid(served) -> None:
    proc, port, seen = served
    kids = _until("two API processes", lambda: len(_children(proc, seen)) == 2 and _children(proc, seen))
    proc.kill()  # at once: a child still starting, before its parent-death signal is set, ends too
    proc.wait(10)

    def gone() -> bool:
        return not [k for k in kids if psutil.pid_exists(k) and psutil.Process(k).status() != psutil.STATUS_ZOMBIE]

    _until("the API processes gone with their parent", gone, 15)


def test_a_port_someone_listens_on_is_refused_not_joined() -> None:
    socks = reuse_port_sockets("127.0.0.1", 0, 2)
    try:
        with pytest.raises(OSError):
            reuse_port_sockets("127.0.0.1", socks[0].getsockname()[1], 2)
    finally:
        for s in socks:
            s.close()
