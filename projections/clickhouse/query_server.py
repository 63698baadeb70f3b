"""The loopback SQL endpoint of the process that owns an embedded chDB directory.

chDB lets one process open a data directory, so while the projector runs,
``qi sql`` cannot open the engine itself: it sends the query here
(docs/decisions/0061-qi-sql-through-the-owner.md). The endpoint listens on
127.0.0.1 only, runs every query with ``readonly=1`` on one of ``readers`` read-only chDB
handles (each in a thread, so queries run side by side on the cores and projecting goes on;
docs/decisions/0067-warehouse-concurrent-raw-reads.md), and announces its URL and pid in
``<run dir>/warehouse/sql-<hash of the DSN>.json``.

``POST /sql`` with ``{"sql": "...", "parameters": {...}}`` answers ``{"columns", "types", "rows"}``
or, when ClickHouse refuses the query, status 400 with ``{"error", "code"}``. With ``"format":
"JSONEachRow"`` (or another of ``RAW_FORMATS``) the answer is the engine's own output in that
format, passed through as bytes without decoding it into Python values.

Control (docs/decisions/0065-warehouse-rebuild-in-the-owner.md): ``POST /rebuild`` starts a
blue/green rebuild of the warehouse inside this process (202; 409 while one runs); ``GET /rebuild``
answers ``{"running", "progress": {done, total, rate, eta_s, phase}, "result", "error"}``.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
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

#: output formats ``POST /sql`` passes through as the engine wrote them (name -> content type)
RAW_FORMATS = {"JSONEachRow": "application/x-ndjson", "JSONCompactEachRow": "application/x-ndjson",
               "JSON": "application/json", "JSONCompact": "application/json", "CSV": "text/csv",
               "CSVWithNames": "text/csv", "TSV": "text/tab-separated-values",
               "TSVWithNames": "text/tab-separated-values", "RawBLOB": "application/octet-stream"}


@dataclass
class _Reader:
    """One read-only chDB handle (clickhouse-connect serialises the calls of one client, so
    concurrency needs one client per query in flight); opened on first use."""
    client: Any = None


class QueryServer:
    def __init__(self, dsn: str, database: str, *, announce: Path, host: str = "127.0.0.1", port: int = 0,
                 rebuild: RebuildControl | None = None, readers: int = 2) -> None:
        self._dsn, self._database = dsn, database
        self._rebuild = rebuild
        self._announce = announce
        self._host, self._port = host, port
        self._runner: web.AppRunner | None = None
        if readers < 1:
            raise ValueError(f"readers must be at least 1, got {readers}")
        self._readers: asyncio.Queue[_Reader] = asyncio.Queue()
        self._all_readers = [_Reader() for _ in range(readers)]
        for r in self._all_readers:
            self._readers.put_nowait(r)
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
        for r in self._all_readers:
            if r.client is not None:
                client, r.client = r.client, None
                client.close()
        try:
            if json.loads(self._announce.read_text()).get("pid") == os.getpid():
                self._announce.unlink(missing_ok=True)
        except (OSError, ValueError):
            pass

    def _run(self, reader: _Reader, database: str, sql: str, parameters: dict[str, Any], fmt: str | None):
        """On ``reader``'s client, kept open (opening one costs ~150 ms on chDB) and recreated
        after a failure. The caller holds ``reader``: one query at a time per handle."""
        if reader.client is None:
            reader.client = _client(self._dsn, settings={"readonly": 1})
        try:
            reader.client.database = database
            if fmt is not None:
                return reader.client.raw_query(sql, parameters=parameters or None, fmt=fmt)
            r = reader.client.query(sql, parameters=parameters or None)
        except Exception as e:
            client, reader.client = reader.client, None
            client.close()
            raise _driver_error(e, "query") from e
        return QueryResult(list(r.column_names), [t.name for t in r.column_types], [list(x) for x in r.result_rows])

    async def _sql(self, request: web.Request) -> web.Response:
        try:
            body: dict[str, Any] = await request.json()
            sql = str(body["sql"])
            parameters = {str(k): v for k, v in dict(body.get("parameters") or {}).items()}
            fmt = body.get("format")
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": 'expected {"sql": "..."}', "code": None}, status=400)
        if fmt is not None and fmt not in RAW_FORMATS:
            return web.json_response({"error": f"format must be one of {sorted(RAW_FORMATS)}", "code": None},
                                     status=400)
        database = str(body.get("database") or self._database)
        reader = await self._readers.get()  # as many queries at a time as handles, besides the writer
        try:
            result = await asyncio.to_thread(self._run, reader, database, sql, parameters, fmt)
        except QueryError as e:
            return web.json_response({"error": str(e), "code": e.code}, status=400)
        finally:
            self._readers.put_nowait(reader)
        if fmt is not None:
            return web.Response(body=result, content_type=RAW_FORMATS[fmt])
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
