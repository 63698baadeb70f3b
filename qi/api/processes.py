"""Several API processes on one port, each accepting on its own ``SO_REUSEPORT`` socket.

With one listening socket shared by every process (uvicorn's ``workers=``), whichever process is
idle first takes the next connection, and the busier one falls further behind: 50 keep-alive
clients split ~40/~10, so one process batches a sensor's series ranges well and the other sends
small batches (decision 0128). Here the parent binds one socket per process to the same port with
``SO_REUSEPORT`` before starting any: the kernel spreads new connections over them by their
addresses' hash, a child restarted after a crash takes over its socket and the connections queued
on it, and the port is known (and announced) before the first child runs.

The parent only supervises: a child that dies is started again after a pause; SIGTERM / SIGINT go
to every child (uvicorn's graceful shutdown), the ones still running after ``grace_s`` are killed.
A child dies with its parent (``PR_SET_PDEATHSIG``), so killing the parent by pid leaves nothing.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from multiprocessing import connection
from multiprocessing.context import SpawnProcess

import structlog

log = structlog.get_logger(__name__)

multiprocessing.allow_connection_pickling()  # sockets cross to spawned children as fds
_spawn = multiprocessing.get_context("spawn")


def listening_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A bound, listening TCP socket with ``TCP_NODELAY`` (inherited by accepted sockets: uvicorn
    writes a head and a body, and with Nagle on the body waits for a delayed ACK, decision 0120)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def reuse_port_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` listening sockets on one port (a free one when ``port`` is 0).

    The port is first bound without ``SO_REUSEPORT``: a port that another program (or a second
    ``qi api``) already listens on with ``SO_REUSEPORT`` fails here with EADDRINUSE, instead of
    being joined silently and its connections shared with a stranger."""
    probe = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        port = probe.getsockname()[1]
    finally:
        probe.close()
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            socks.append(listening_socket(host, port, reuse_port=True))
    except OSError:
        for s in socks:
            s.close()
        raise
    return socks


def _die_with_parent(parent: int) -> bool:
    """SIGTERM to this process when its parent dies; False when the parent is gone already."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent's SIGTERM handling still stops children
        pass
    return os.getppid() == parent  # a parent that died before the prctl sends no signal


def _serve(sock: socket.socket, app: str, grace_s: float, parent: int) -> None:
    """A child: uvicorn on its own socket, the app made by the factory ``app``."""
    if not _die_with_parent(parent):
        return
    import uvicorn

    config = uvicorn.Config(app, factory=True, log_config=None, access_log=False,
                            timeout_graceful_shutdown=grace_s)
    uvicorn.Server(config).run(sockets=[sock])


@dataclass
class _Child:
    index: int
    sock: socket.socket
    process: SpawnProcess | None = None
    restarts: int = 0
    started: float = field(default=0.0)


class ApiProcesses:
    """Run ``app`` (an import path to an app factory) in one process per socket until SIGTERM."""

    def __init__(self, socks: list[socket.socket], app: str, *, grace_s: float = 10.0,
                 restart_pause_s: float = 1.0) -> None:
        self._children = [_Child(i, s) for i, s in enumerate(socks)]
        self._app, self._grace_s, self._pause_s = app, grace_s, restart_pause_s
        self._stopping = False

    def _start(self, child: _Child) -> None:
        child.process = _spawn.Process(target=_serve, args=(child.sock, self._app, self._grace_s, os.getpid()),
                                       name=f"qi-api-{child.index}", daemon=False)
        child.process.start()
        child.started = time.monotonic()
        log.info("api.process_started", index=child.index, pid=child.process.pid, restarts=child.restarts)

    def _stop(self, *_: object) -> None:
        self._stopping = True

    def run(self) -> None:
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for c in self._children:
                self._start(c)
            while not self._stopping:
                for c in self._children:
                    assert c.process is not None
                    if c.process.exitcode is not None and not self._stopping:
                        log.warning("api.process_died", index=c.index, pid=c.process.pid,
                                    exitcode=c.process.exitcode, restarts=c.restarts)
                        # a child that keeps dying at start is not restarted in a tight loop
                        if time.monotonic() - c.started < self._pause_s:
                            time.sleep(self._pause_s)
                        c.restarts += 1
                        self._start(c)
                # wakes at once when a child ends (its sentinel), else to look at the stop flag
                connection.wait([c.process.sentinel for c in self._children if c.process is not None], timeout=0.5)
        finally:
            self._shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _shutdown(self) -> None:
        live = [c.process for c in self._children if c.process is not None and c.process.exitcode is None]
        for p in live:
            p.terminate()  # SIGTERM: uvicorn finishes its requests within the grace period
        deadline = time.monotonic() + self._grace_s + 5
        for p in live:
            p.join(max(0.0, deadline - time.monotonic()))
        for p in live:
            if p.exitcode is None:
                log.warning("api.process_killed", pid=p.pid)
                p.kill()
                p.join(5)
        for c in self._children:
            c.sock.close()
