"""The supervisor: one process that keeps the platform's workers running.

It starts every worker instance as a child process with its own log file,
restarts a child that exits with exponential backoff (reset after a minute
of good health), and on SIGTERM stops every child (SIGTERM, then SIGKILL
after a grace period). Its state (pid, start time, restarts, last exit of
every instance) is written atomically to ``fleet.json`` in the run directory
after every change, for ``qi ps``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import structlog
from pydantic import BaseModel

from qi.fleet.spec import WorkerSpec

log = structlog.get_logger(__name__)


class InstanceState(BaseModel):
    name: str
    worker: str
    argv: list[str]
    log: str
    pid: int | None = None
    create_time: float | None = None
    started_at: float | None = None
    restarts: int = 0
    last_exit: int | None = None
    state: str = "starting"  # running | backoff | stopped


class FleetState(BaseModel):
    supervisor_pid: int
    instances: dict[str, InstanceState] = {}


@dataclass
class _Child:
    state: InstanceState
    spec: WorkerSpec
    proc: asyncio.subprocess.Process | None = None
    backoff_s: float = 1.0
    task: asyncio.Task | None = field(default=None, repr=False)


class Supervisor:
    def __init__(self, specs: list[WorkerSpec], *, run_dir: Path, grace_s: float = 15.0,
                 max_backoff_s: float = 30.0, healthy_after_s: float = 60.0) -> None:
        self._specs = specs
        self._run_dir = run_dir
        self._grace_s = grace_s
        self._max_backoff_s = max_backoff_s
        self._healthy_after_s = healthy_after_s
        self._children: dict[str, _Child] = {}
        self._stopping = asyncio.Event()

    @property
    def state_file(self) -> Path:
        return self._run_dir / "fleet.json"

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        for spec in self._specs:
            for name in spec.instance_names():
                st = InstanceState(name=name, worker=spec.name, argv=spec.argv(),
                                   log=str(self._run_dir / "logs" / f"{name}.log"))
                child = _Child(st, spec)
                self._children[name] = child
        self._save()
        for child in self._children.values():
            child.task = asyncio.create_task(self._keep_running(child))
        await self._stopping.wait()
        log.info("fleet.stopping", instances=len(self._children))
        await asyncio.gather(*(self._stop_child(c) for c in self._children.values()))
        for c in self._children.values():
            if c.task:
                c.task.cancel()
        self._save()
        log.info("fleet.stopped")

    async def _keep_running(self, child: _Child) -> None:
        st = child.state
        Path(st.log).parent.mkdir(parents=True, exist_ok=True)
        while not self._stopping.is_set():
            with open(st.log, "ab") as out:
                child.proc = await asyncio.create_subprocess_exec(
                    *st.argv, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=asyncio.subprocess.STDOUT,
                    env={**os.environ, "QI_RUNNER_INSTANCE": st.name,
                         "QI_LOG_FIELDS": json.dumps({"worker": st.worker, "instance": st.name})},
                )
            st.pid = child.proc.pid
            try:
                st.create_time = psutil.Process(st.pid).create_time()
            except psutil.Error:
                st.create_time = None
            st.started_at = time.time()
            st.state = "running"
            self._save()
            log.info("fleet.started", instance=st.name, pid=st.pid, restarts=st.restarts)
            code = await child.proc.wait()
            if self._stopping.is_set():
                break
            ran_s = time.time() - (st.started_at or time.time())
            if ran_s >= self._healthy_after_s:
                child.backoff_s = 1.0
            st.last_exit, st.state, st.pid = code, "backoff", None
            st.restarts += 1
            self._save()
            log.warning("fleet.exited", instance=st.name, code=code, ran_s=round(ran_s, 1),
                        restart_in_s=child.backoff_s)
            try:
                await asyncio.wait_for(self._stopping.wait(), child.backoff_s)
            except TimeoutError:
                pass
            child.backoff_s = min(child.backoff_s * 2, self._max_backoff_s)

    async def _stop_child(self, child: _Child) -> None:
        proc = child.proc
        if proc is None or proc.returncode is not None:
            child.state.state = "stopped"
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), self._grace_s)
        except TimeoutError:
            log.warning("fleet.kill", instance=child.state.name, pid=proc.pid, after_s=self._grace_s)
            proc.kill()
            await proc.wait()
        child.state.last_exit, child.state.state, child.state.pid = proc.returncode, "stopped", None

    def _save(self) -> None:
        state = FleetState(supervisor_pid=os.getpid(),
                           instances={n: c.state for n, c in self._children.items()})
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(state.model_dump_json(indent=2))
        tmp.replace(self.state_file)


def load_state(run_dir: Path) -> FleetState | None:
    try:
        return FleetState.model_validate_json((run_dir / "fleet.json").read_text())
    except (FileNotFoundError, ValueError):
        return None
