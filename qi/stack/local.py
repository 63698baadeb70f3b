"""The local stack's lifecycle: up (idempotent), status, down."""

from __future__ import annotations

import fcntl
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import structlog
from pydantic import BaseModel

from qi.stack import process
from qi.stack.errors import StackError
from qi.stack.services import (
    Kafka,
    Mqtt,
    ObjectStore,
    Postgres,
    Redis,
    SchemaRegistry,
    Service,
    check_clickhouse,
)

log = structlog.get_logger(__name__)


class ServiceState(BaseModel):
    port: int
    url: str
    process: process.ProcessRecord


class StackState(BaseModel):
    services: dict[str, ServiceState] = {}
    clickhouse_dsn: str | None = None


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    url: str | None
    pid: int | None
    running: bool
    healthy: bool
    detail: str


class LocalStack:
    """The embedded stack under one run directory."""

    def __init__(
        self,
        run_dir: Path,
        *,
        mqtt_broker: str = "auto",
        start_timeout_s: float = 60.0,
        log_storage: str = "durable",
        topic_prefix: str = "",
    ) -> None:
        self.run_dir = run_dir.resolve()
        self._timeout = start_timeout_s
        self.log_storage = log_storage
        durable: list[Service] = [ObjectStore()] if log_storage == "durable" else []
        self.services: list[Service] = [
            *durable, Kafka(log_storage), Postgres(), Redis(), Mqtt(mqtt_broker), SchemaRegistry(topic_prefix),
        ]

    # --- paths and state -------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.run_dir / "stack.json"

    @property
    def data_dir(self) -> Path:
        return self.run_dir / "data"

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"

    @property
    def clickhouse_dsn(self) -> str:
        return f"chdb://{self.data_dir / 'clickhouse'}"

    def load_state(self) -> StackState:
        try:
            return StackState.model_validate_json(self.state_file.read_text())
        except FileNotFoundError:
            return StackState()
        except ValueError as e:
            raise StackError(f"stack state {self.state_file} is unreadable ({e}); remove it and the processes by hand") from e

    def _save(self, state: StackState) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(state.model_dump_json(indent=2))
        tmp.replace(self.state_file)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # --- lifecycle -------------------------------------------------------
    def up(self) -> dict[str, str]:
        """Start every service that is not running; wait until all are healthy; return URLs."""
        with self._locked():
            state = self.load_state()
            by_name = {svc.name: svc for svc in self.services}
            started: set[str] = set()
            for svc in self.services:
                current = state.services.get(svc.name)
                if current and process.process_of(current.process):
                    if not started.intersection(svc.depends_on):
                        continue
                    process.stop(current.process)  # it points at a dependency that has moved
                started.add(svc.name)
                for dep in svc.depends_on:
                    self._wait_healthy(by_name[dep], state.services[dep])
                state.services[svc.name] = self._start(svc, self.urls(state))
                self._save(state)
            (self.data_dir / "clickhouse").mkdir(parents=True, exist_ok=True)
            state.clickhouse_dsn = self.clickhouse_dsn
            self._save(state)
            for svc in self.services:
                self._wait_healthy(svc, state.services[svc.name])
            return self.urls(state)

    def _start(self, svc: Service, urls: dict[str, str], attempts: int = 3) -> ServiceState:
        logfile = self.log_dir / f"{svc.name}.log"
        for attempt in range(1, attempts + 1):
            port = process.free_port()
            launch = svc.prepare(self.data_dir / svc.name, port, urls)
            rec = process.spawn(launch.argv, log=logfile, cwd=self.run_dir, user=launch.user, env=launch.env)
            log.info("stack.started", service=svc.name, pid=rec.pid, port=port)
            if process.wait_for_port(port, self._timeout, rec):
                return ServiceState(port=port, url=svc.url(port), process=rec)
            exited = process.process_of(rec) is None
            process.stop(rec)
            if not exited or attempt == attempts:
                raise StackError(f"did not open port {port}", service=svc.name, log_tail=process.tail(logfile))
            # It exited before listening: a free port picked here was taken by another process
            # before the service bound it (SeaweedFS binds nine). Fresh ports, once more.
            log.warning("stack.start_retry", service=svc.name, attempt=attempt, log_tail=process.tail(logfile)[-300:])
        raise AssertionError("unreachable")

    def _wait_healthy(self, svc: Service, st: ServiceState) -> None:
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                svc.check(st.url)
                return
            except Exception as e:  # each client raises its own errors; we only need "not yet"
                if time.monotonic() > deadline or process.process_of(st.process) is None:
                    raise StackError(f"not healthy: {e}", service=svc.name, log_tail=process.tail(st.process.log)) from e
                time.sleep(0.2)

    def urls(self, state: StackState | None = None) -> dict[str, str]:
        state = state or self.load_state()
        urls = {name: s.url for name, s in state.services.items()}
        if state.clickhouse_dsn:
            urls["clickhouse"] = state.clickhouse_dsn
        return urls

    def is_up(self) -> bool:
        state = self.load_state()
        return all(
            (s := state.services.get(svc.name)) is not None and process.process_of(s.process) is not None
            for svc in self.services
        )

    def status(self, *, check_clickhouse_engine: bool = True) -> list[ServiceStatus]:
        state = self.load_state()
        out = []
        for svc in self.services:
            st = state.services.get(svc.name)
            if st is None:
                out.append(ServiceStatus(svc.name, None, None, False, False, "not started"))
                continue
            running = process.process_of(st.process) is not None
            healthy, detail = False, "process not running"
            if running:
                try:
                    detail, healthy = svc.check(st.url), True
                except Exception as e:  # report, don't raise: status shows every service
                    detail = f"unhealthy: {e}"
            out.append(ServiceStatus(svc.name, st.url, st.process.pid, running, healthy, detail))
        if state.clickhouse_dsn:
            if check_clickhouse_engine:
                try:
                    detail, healthy = f"chDB {check_clickhouse(state.clickhouse_dsn)} (in-process)", True
                except Exception as e:  # chDB allows one process per directory: say so
                    detail, healthy = f"cannot open: {e}", False
            else:
                detail, healthy = "in-process chDB (not opened)", True
            out.append(ServiceStatus("clickhouse", state.clickhouse_dsn, None, healthy, healthy, detail))
        return out

    def down(self, *, purge: bool = False) -> list[process.StopResult]:
        """Stop exactly the processes this stack started; with ``purge``, also delete their data.

        Without ``purge`` the data stays: the next ``up`` finds the log, the
        read models and the registrations where they were (decision 0070).
        """
        with self._locked():
            state = self.load_state()
            results = []
            for name in reversed(list(state.services)):
                res = process.stop(state.services[name].process)
                log.info("stack.stopped", service=name, pid=res.pid, was_running=res.was_running, killed=res.killed)
                results.append(res)
            if purge:
                shutil.rmtree(self.data_dir, ignore_errors=True)
                log.info("stack.purged", data_dir=str(self.data_dir))
            self.state_file.unlink(missing_ok=True)
            return results
