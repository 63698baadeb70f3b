"""The supervisor: one process that keeps the platform's workers running.

It starts every worker instance as a child process with its own log file,
restarts a child that exits with exponential backoff (the first restart at
once, then 1 s doubling; reset after a minute of good health), and on SIGTERM
stops every child (SIGTERM, then SIGKILL after a grace period). For a spec
with ``standby``, each instance also has a warm spare once the instance
serves /health: the same command, prepared and waiting on its stdin
(qi.fleet.standby); a restart promotes it instead of starting cold
(docs/decisions/0074). Its state (pid, start time, restarts, last exit of
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
from qi.fleet.standby import PROMOTE

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
    standby_pid: int | None = None  # the warm spare, if any


class FleetState(BaseModel):
    supervisor_pid: int
    instances: dict[str, InstanceState] = {}


@dataclass
class _Child:
    state: InstanceState
    spec: WorkerSpec
    proc: asyncio.subprocess.Process | None = None
    spare: asyncio.subprocess.Process | None = None
    backoff_s: float = 0.0
    task: asyncio.Task | None = field(default=None, repr=False)
    spare_task: asyncio.Task | None = field(default=None, repr=False)


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
            for t in (c.task, c.spare_task):
                if t:
                    t.cancel()
        self._save()
        log.info("fleet.stopped")

    async def _spawn(self, child: _Child, *, standby: bool) -> asyncio.subprocess.Process:
        st = child.state
        env = {**os.environ, "QI_RUNNER_INSTANCE": st.name,
               "QI_LOG_FIELDS": json.dumps({"worker": st.worker, "instance": st.name})}
        env.pop("QI_RUNNER_STANDBY", None)
        if standby:
            env["QI_RUNNER_STANDBY"] = "true"
        with open(st.log, "ab") as out:
            return await asyncio.create_subprocess_exec(
                *st.argv, stdin=asyncio.subprocess.PIPE if standby else asyncio.subprocess.DEVNULL,
                stdout=out, stderr=asyncio.subprocess.STDOUT, env=env)

    async def _promote(self, child: _Child) -> asyncio.subprocess.Process | None:
        """The instance's warm spare, told to take over; None if there is no live one."""
        spare, child.spare, child.state.standby_pid = child.spare, None, None
        if spare is None or spare.returncode is not None or spare.stdin is None:
            return None
        try:
            spare.stdin.write(PROMOTE)
            await spare.stdin.drain()
            spare.stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            return None
        return spare

    async def _keep_running(self, child: _Child) -> None:
        st = child.state
        Path(st.log).parent.mkdir(parents=True, exist_ok=True)
        while not self._stopping.is_set():
            proc = await self._promote(child)
            promoted = proc is not None
            if proc is None:
                proc = await self._spawn(child, standby=False)
            child.proc = proc
            st.pid = proc.pid
            try:
                st.create_time = psutil.Process(st.pid).create_time()
            except psutil.Error:
                st.create_time = None
            st.started_at = time.time()
            st.state = "running"
            self._save()
            log.info("fleet.started", instance=st.name, pid=st.pid, restarts=st.restarts, promoted=promoted)
            if child.spec.standby:
                child.spare_task = asyncio.create_task(self._keep_spare(child, proc))
            code = await proc.wait()
            if self._stopping.is_set():
                break
            ran_s = time.time() - (st.started_at or time.time())
            if ran_s >= self._healthy_after_s:
                child.backoff_s = 0.0
            st.last_exit, st.state, st.pid = code, "backoff", None
            st.restarts += 1
            self._save()
            log.warning("fleet.exited", instance=st.name, code=code, ran_s=round(ran_s, 1),
                        restart_in_s=child.backoff_s)
            if child.backoff_s > 0:
                try:
                    await asyncio.wait_for(self._stopping.wait(), child.backoff_s)
                except TimeoutError:
                    pass
            child.backoff_s = min(max(child.backoff_s * 2, 1.0), self._max_backoff_s)

    async def _keep_spare(self, child: _Child, active: asyncio.subprocess.Process) -> None:
        """While ``active`` runs: once it serves /health (its start no longer competes for the CPU),
        keep one warm spare of the instance alive."""
        if not await self._until_announced(child.state.name, active):
            return
        while not self._stopping.is_set() and active.returncode is None:
            spare = child.spare
            if spare is None or spare.returncode is not None:
                spare = child.spare = await self._spawn(child, standby=True)
                child.state.standby_pid = spare.pid
                if self._stopping.is_set():  # stopping began while it was being spawned
                    await self._stop_spare(child)
                    return
                self._save()
                log.info("fleet.standby_started", instance=child.state.name, pid=spare.pid)
            waits = [asyncio.create_task(spare.wait()), asyncio.create_task(active.wait()),
                     asyncio.create_task(self._stopping.wait())]
            _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for t in pending:
                t.cancel()
            if spare.returncode is not None and child.spare is spare and not self._stopping.is_set():
                log.warning("fleet.standby_exited", instance=child.state.name, pid=spare.pid, code=spare.returncode)
                child.spare, child.state.standby_pid = None, None
                self._save()
                try:  # a spare that cannot even prepare is retried slowly, not in a loop
                    await asyncio.wait_for(self._stopping.wait(), self._max_backoff_s)
                except TimeoutError:
                    pass

    async def _until_announced(self, instance: str, active: asyncio.subprocess.Process) -> bool:
        """Until ``active`` announced its health address; False if it ended (or we stop) first."""
        path = self._run_dir / "health" / f"{instance}.json"
        while active.returncode is None and not self._stopping.is_set():
            try:
                if json.loads(path.read_text()).get("pid") == active.pid:
                    return True
            except (OSError, ValueError):
                pass
            await asyncio.sleep(0.25)
        return False

    async def _stop_child(self, child: _Child) -> None:
        await asyncio.gather(self._stop_spare(child), self._stop_active(child))

    async def _stop_spare(self, child: _Child) -> None:
        spare, child.spare, child.state.standby_pid = child.spare, None, None
        if spare is None or spare.returncode is not None:
            return
        if spare.stdin is not None:
            spare.stdin.close()  # a spare at its gate reads EOF and exits
        spare.send_signal(signal.SIGTERM)  # one still preparing has no handler yet: it just ends
        try:
            await asyncio.wait_for(spare.wait(), self._grace_s)
        except TimeoutError:
            spare.kill()
            await spare.wait()

    async def _stop_active(self, child: _Child) -> None:
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
