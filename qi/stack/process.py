"""Detached server processes, identified by pid *and* start time.

A pid alone is not an identity: after a reboot or a long time it may belong to
someone else. We record the process's create time next to its pid and only
ever signal a process whose create time still matches.
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
from pydantic import BaseModel


class ProcessRecord(BaseModel):
    pid: int
    create_time: float
    argv: list[str]
    log: str


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_user(user: str | None) -> dict:
    """subprocess arguments to run as ``user`` with *its* group and no inherited groups.

    ``user=`` alone changes only the uid: the child would keep root's gid and
    the group permission bits of root-owned directories would apply to it.
    """
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def spawn(argv: list[str], *, log: Path, cwd: Path, user: str | None = None, env: dict[str, str] | None = None) -> ProcessRecord:
    """Start a process in its own session, detached from ours, output to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
            **as_user(user),
        )
    create_time = psutil.Process(proc.pid).create_time()
    return ProcessRecord(pid=proc.pid, create_time=create_time, argv=argv, log=str(log))


def process_of(rec: ProcessRecord) -> psutil.Process | None:
    """The live process of a record, or None if it exited or the pid was reused."""
    try:
        p = psutil.Process(rec.pid)
        if abs(p.create_time() - rec.create_time) > 0.05 or p.status() == psutil.STATUS_ZOMBIE:
            return None
        return p
    except psutil.Error:
        return None


@dataclass
class StopResult:
    pid: int
    was_running: bool
    killed: bool


def stop(rec: ProcessRecord, *, grace_s: float = 10.0) -> StopResult:
    """SIGTERM the process (and its children), then SIGKILL whatever is left after ``grace_s``."""
    p = process_of(rec)
    if p is None:
        return StopResult(rec.pid, False, False)
    try:
        family = [p, *p.children(recursive=True)]
    except psutil.Error:
        family = [p]
    try:
        p.send_signal(signal.SIGTERM)
    except psutil.Error:
        pass
    alive = _wait_gone(family, grace_s)
    for q in alive:
        try:
            q.kill()
        except psutil.Error:
            pass
    _wait_gone(alive, 5.0)
    return StopResult(rec.pid, True, bool(alive))


def _is_gone(p: psutil.Process) -> bool:
    # A zombie has exited; whether its parent (often init, for detached servers) has reaped it yet is not our concern.
    try:
        return p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def _wait_gone(procs: list[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """Wait until every process has exited; return those still alive after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    alive = list(procs)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if not _is_gone(p)]
        if alive:
            time.sleep(0.02)
    return alive


def tail(path: Path | str, lines: int = 20) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            return "\n".join(f.read().decode(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_for_port(port: int, timeout_s: float, proc: ProcessRecord) -> bool:
    """Wait until something listens on 127.0.0.1:port (False if the process died first)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process_of(proc) is None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False
