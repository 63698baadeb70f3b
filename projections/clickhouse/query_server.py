"""The loopback SQL endpoint of the process that owns an embedded chDB directory.

chDB lets one process open a data directory, so while the projector runs,
``qi sql`` cannot open the engine itself: it sends the query here
(docs/decisions/0061-qi-sql-through-the-owner.md). The endpoint listens on
127.0.0.1 only, runs every query with ``readonly=1`` on its own client (in a
thread, so projecting goes on), and announces its URL and pid in
``<run dir>/warehouse/sql-<hash of the DSN>.json``.

``POST /sql`` with ``{"sql": "...", "parameters": {...}}`` answers ``{"columns", "types", "rows"}``
or, when ClickHouse refuses the query, status 400 with ``{"error", "code"}``.

Control (docs/decisions/0065-warehouse-rebuild-in-the-owner.md): ``POST /rebuild`` starts a
blue/green rebuild of the warehouse inside this process (202; 409 while one runs); ``GET /rebuild``
answers ``{"running", "progress": {done, total, rate, eta_s, phase}, "result", "error"}``.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from projections.clickhouse.errors import QueryError
from projections.clickhouse.query import QueryResult
from projections.clickhouse.warehouse import _client, _driver_error

if TYPE_CHECKING:
    from projections.clickhouse.rebuild import RebuildControl

log = structlog.get_logger(__name__)


class QueryServer:
    def __init__(self, dsn: str, database: str, *, announce: Path, host: str = "127.0.0.1", port: int = 0,
                 rebuild: RebuildControl | None = None) -> None:
        self._dsn, self._database = dsn, database
        self._rebuild = rebuild
        self._announce = announce
        self._host, self._port = host, port
        self._runner: web.AppRunner | None = None
        self._lock = asyncio.Lock()
        self._reader = None
        self.url: str | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/sql", self._sql)
        if self._rebuild is not None:
            app.router.add_post("/rebuild", self._start_rebuild)
            app.router.add_get("/rebuild", self._rebuild_status)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://{self._host}:{port}"
        self._announce.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._announce.with_suffix(".tmp")
        tmp.write_text(json.dumps({"url": self.url, "pid": os.getpid(), "database": self._database}))
        tmp.replace(self._announce)
        log.info("warehouse.sql_endpoint", url=self.url, announce=str(self._announce))

    async def close(self) -> None:
        if self._rebuild is not None:
            await self._rebuild.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        try:
            if json.loads(self._announce.read_text()).get("pid") == os.getpid():
                self._announce.unlink(missing_ok=True)
        except (OSError, ValueError):
            pass

    def _query(self, database: str, sql: str, parameters: dict[str, Any]) -> QueryResult:
        """On one read-only client kept open (opening one costs ~150 ms on chDB), recreated after
        a failure; callers hold the lock, so it serves one query at a time."""
        if self._reader is None:
            self._reader = _client(self._dsn, settings={"readonly": 1})
        try:
            self._reader.database = database
            r = self._reader.query(sql, parameters=parameters or None)
        except Exception as e:
            reader, self._reader = self._reader, None
            reader.close()
            raise _driver_error(e, "query") from e
        return QueryResult(list(r.column_names), [t.name for t in r.column_types], [list(x) for x in r.result_rows])

    async def _sql(self, request: web.Request) -> web.Response:
        try:
            body: dict[str, Any] = await request.json()
            sql = str(body["sql"])
            parameters = {str(k): v for k, v in dict(body.get("parameters") or {}).items()}
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": 'expected {"sql": "..."}', "code": None}, status=400)
        database = str(body.get("database") or self._database)
        async with self._lock:  # one query at a time on the engine besides the writer
            try:
                result: QueryResult = await asyncio.to_thread(self._query, database, sql, parameters)
            except QueryError as e:
                return web.json_response({"error": str(e), "code": e.code}, status=400)
        return web.Response(text=result.to_json(), content_type="application/json")

    async def _start_rebuild(self, request: web.Request) -> web.Response:
        assert self._rebuild is not None
        if not self._rebuild.start():
            return web.json_response({"error": "a warehouse rebuild is already running", **self._rebuild.status()},
                                     status=409)
        log.info("warehouse.rebuild_started")
        return web.json_response(self._rebuild.status(), status=202)

    async def _rebuild_status(self, request: web.Request) -> web.Response:
        assert self._rebuild is not None
        return web.json_response(self._rebuild.status())
