"""Rebuild the warehouse from the beginning of the log into a fresh database, then swap (blue/green).

1. A fresh database ``<live>__rb<stamp>`` is migrated and filled by its own
   ``ClickHouseProjector`` on its own runner and consumer group, from offset 0,
   while the live warehouse keeps answering queries and its projector keeps writing.
2. Caught up (what it has written reaches the log end): ``EXCHANGE TABLES`` per
   table moves the rebuilt tables under the live name (each swap atomic); the
   live projector writes by name, so its next insert lands in the new tables.
3. The rebuild keeps writing until it has passed the log end measured *after*
   the swap, so a batch the live projector wrote into an old table during the
   swap is in the new one too (duplicates collapse: ReplacingMergeTree on
   ``event_id``); then it stops and the database now holding the old tables is
   dropped.

On embedded chDB only the process owning the directory can do this, so
``qi worker warehouse`` runs it on request through its loopback endpoint
(``RebuildControl``, docs/decisions/0065-warehouse-rebuild-in-the-owner.md);
against a server (or an embedded directory nobody holds) the CLI runs it
itself. Progress (done/total, rate, ETA) goes to a callback.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import structlog

from events.topics import FAMILIES
from projections.clickhouse.projector import ClickHouseProjector
from projections.clickhouse.rows import WarehouseBatch
from projections.clickhouse.warehouse import ClickHouseWarehouse, _client
from projections.rebuild import Progress, behind, catch_up, end_offsets
from qi.platform import Platform

log = structlog.get_logger(__name__)

Positions = dict[tuple[str, int], int]


class _Tracked(ClickHouseWarehouse):
    """A warehouse writer that remembers the positions it has written itself (after the swap the
    stored positions are shared with the live projector)."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.written: Positions = {}

    def write(self, batch: WarehouseBatch) -> int:
        rows = super().write(batch)
        for tp, o in batch.positions.items():
            if o > self.written.get(tp, 0):
                self.written[tp] = o
        return rows


async def rebuild_warehouse(platform: Platform, database: str | None = None, *,
                            on_progress: Callable[[Progress], None] = lambda p: None, every_s: float = 0.5,
                            stamp: str | None = None) -> dict[str, Any]:
    """Replay every topic into a fresh database and swap it in as ``database`` (default: the configured
    one). Must run in the process that may open the engine (the owner, on chDB)."""
    live = platform.warehouse(database)
    stamp = stamp or f"rb{int(time.time() * 1000)}"
    fresh = _Tracked(live.dsn, f"{live.database}__{stamp}", projection=live.projection)
    ch = platform.settings.clickhouse
    processor = ClickHouseProjector(fresh, batch_rows=ch.batch_rows, batch_max_delay_ms=ch.batch_max_delay_ms)
    processor.name = f"rebuild-warehouse-{stamp}"  # its own consumer group; positions from the fresh database: 0
    await platform.ensure_topics()
    serde = await platform.serde()
    runner = platform.batch_runner(processor, serde)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    t0 = time.monotonic()
    old = None
    swapped = False
    total = 0
    try:
        # 1. fill the fresh database
        total = await catch_up(platform, FAMILIES, lambda: dict(fresh.written), task, on_progress, every_s, t0)
        target = fresh.database
        old = await asyncio.to_thread(fresh.promote, live.database)  # 2. swap, table by table
        swapped = True
        log.info("warehouse.swapped", database=live.database, rebuilt=target, old=old)
        after = await end_offsets(platform, tuple(FAMILIES))  # 3. pass what the live writer had in flight
        while behind(dict(fresh.written), after) > 0:
            if task.done():
                task.result()
                raise RuntimeError("warehouse rebuild runner stopped before passing the swap")
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        try:
            await task  # the projector's close() drains and closes ``fresh``'s client
        finally:
            if not swapped:  # a rebuild that never swapped leaves nothing behind
                await asyncio.to_thread(_drop, live, fresh.database)
    if old is not None:
        await asyncio.to_thread(_drop, live, old)
    seconds = time.monotonic() - t0
    on_progress(Progress(total, total, total / max(seconds, 1e-6), 0.0, "swapped"))
    return {"projection": "warehouse", "sink": "clickhouse", "target": target, "database": live.database,
            "dropped": old, "events": sum(fresh.written.values()), "seconds": round(seconds, 2)}


def _drop(live: ClickHouseWarehouse, database: str) -> None:
    client = _client(live.dsn)
    try:
        client.command(f"DROP DATABASE IF EXISTS `{database}`")
    finally:
        client.close()


class RebuildControl:
    """One warehouse rebuild at a time inside the owning process, started and watched over the
    owner's loopback endpoint (``POST /rebuild``, ``GET /rebuild``)."""

    def __init__(self, platform: Platform, database: str) -> None:
        self._platform, self._database = platform, database
        self._task: asyncio.Task[dict[str, Any]] | None = None
        self.progress: Progress | None = None
        self.result: dict[str, Any] | None = None
        self.error: str | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> bool:
        """Start a rebuild; False when one is already running."""
        if self.running:
            return False
        self.progress, self.result, self.error = None, None, None
        self._task = asyncio.create_task(self._run())
        return True

    async def _run(self) -> dict[str, Any]:
        try:
            self.result = await rebuild_warehouse(self._platform, self._database,
                                                  on_progress=lambda p: setattr(self, "progress", p))
            return self.result
        except Exception as e:  # reported to the CLI that polls; the live warehouse is untouched or swapped
            log.exception("warehouse.rebuild_failed")
            self.error = f"{type(e).__name__}: {e}"
            raise

    def status(self) -> dict[str, Any]:
        return {"running": self.running, "progress": asdict(self.progress) if self.progress else None,
                "result": self.result, "error": self.error}

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except BaseException:  # noqa: BLE001 - cancelled or failed: either way it is over
                pass


async def rebuild_via(url: str, *, on_progress: Callable[[Progress], None] = lambda p: None,
                      every_s: float = 0.5, timeout_s: float = 24 * 3600) -> dict[str, Any]:
    """Ask the owner of an embedded warehouse (its endpoint ``url``) to rebuild, and follow it."""
    import httpx

    from projections.clickhouse.errors import WarehouseError, WarehouseUnavailable

    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        try:
            resp = await http.post("/rebuild")
        except httpx.HTTPError as e:
            raise WarehouseUnavailable(f"the warehouse's endpoint {url} did not answer: {e}") from e
        if resp.status_code == 404:
            raise WarehouseError(f"the process owning the warehouse ({url}) cannot rebuild: restart it "
                                 "with this version of qi")
        if resp.status_code == 409:
            raise WarehouseError(f"a warehouse rebuild is already running in {url}")
        resp.raise_for_status()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                status = (await http.get("/rebuild")).json()
            except httpx.HTTPError as e:
                raise WarehouseUnavailable(f"lost the warehouse's endpoint {url} during the rebuild: {e}") from e
            if status.get("progress"):
                on_progress(Progress(**status["progress"]))
            if not status["running"]:
                if status.get("error"):
                    raise WarehouseError(f"the warehouse rebuild failed: {status['error']}")
                return status["result"]
            await asyncio.sleep(every_s)
    raise WarehouseError(f"the warehouse rebuild did not finish in {timeout_s}s")
