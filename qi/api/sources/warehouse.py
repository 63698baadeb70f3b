"""ClickHouse reads (readings, scores, alerts, twin history), read-only and parameterised.

On the embedded default (``chdb://``) the engine belongs to the warehouse worker, so queries go
to its loopback SQL endpoint, like ``qi sql`` (decision 0061), through aiohttp (a batch of sensor
series is megabytes, which aiohttp reads for about half of httpx's CPU; decision 0122); with a
server DSN the API has its own client. An embedded warehouse whose owner is not running is
Unavailable: the API never opens the chDB directory itself (that would lock the projector out).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import orjson

from projections.clickhouse.errors import WarehouseError
from projections.clickhouse.query import find_endpoint
from projections.clickhouse.warehouse import _client, _driver_error, is_embedded
from qi.api.errors import Unavailable

T = TypeVar("T")


def _utc(v):
    """ClickHouse times are UTC; the engine hands them over without a zone."""
    if isinstance(v, str):
        v = datetime.fromisoformat(v)
    if isinstance(v, datetime) and v.tzinfo is None:
        v = v.replace(tzinfo=UTC)
    return v


def _json(v: Any) -> str:
    return orjson.dumps(v).decode()


class WarehouseReader:
    def __init__(self, dsn: str, database: str, *, run_dir: Path, timeout_s: float = 30.0) -> None:
        self._dsn, self.database, self._run_dir = dsn, database, run_dir
        self._timeout = timeout_s
        self._http: aiohttp.ClientSession | None = None
        self._client = None
        self._lock = asyncio.Lock()
        self._url: tuple[float, str | None] = (0.0, None)

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout),
                                           connector=aiohttp.TCPConnector(limit=8), json_serialize=_json)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
        if self._client is not None:
            self._client.close()

    def _endpoint(self) -> str | None:
        at, url = self._url
        if time.monotonic() - at > 1.0:
            url = find_endpoint(self._run_dir, self._dsn)
            self._url = (time.monotonic(), url)
        return url

    async def _post(self, payload: dict[str, Any]) -> bytes:
        """POST a query to the chDB owner's SQL endpoint; the body of its 200 answer, or Unavailable
        saying why."""
        url = self._endpoint()
        if url is None:
            raise Unavailable("the warehouse (chDB) is owned by `qi worker warehouse`, which is not running")
        assert self._http is not None
        try:
            async with self._http.post(f"{url}/sql", json={"database": self.database, **payload}) as resp:
                body = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            self._url = (0.0, None)
            raise Unavailable(f"the warehouse's SQL endpoint did not answer: {type(e).__name__}") from e
        if status != 200:
            try:
                error = str(orjson.loads(body).get("error", ""))
            except (ValueError, AttributeError):
                error = body.decode("utf-8", "replace")
            raise Unavailable(f"the warehouse could not answer: {error[:300]}")
        return body

    async def query(self, sql: str, parameters: dict[str, Any]) -> list[dict[str, Any]]:
        """Rows as dicts (times ISO 8601 via the endpoint, datetimes on a server)."""
        if is_embedded(self._dsn):
            body = orjson.loads(await self._post({"sql": sql, "parameters": parameters}))
            times = [i for i, t in enumerate(body["types"]) if "DateTime" in t]
            rows = body["rows"]
            for r in rows:
                for i in times:
                    r[i] = _utc(r[i])
            return [dict(zip(body["columns"], r)) for r in rows]
        r = await asyncio.to_thread(self._direct, lambda c: c.query(sql, parameters=parameters))
        return [{c: _utc(v) if isinstance(v, datetime) else v for c, v in zip(r.column_names, row)}
                for row in r.result_rows]

    async def query_raw(self, sql: str, parameters: dict[str, Any], fmt: str) -> bytes:
        """The engine's own output in ``fmt`` (e.g. JSONEachRow), as bytes: nothing is decoded into
        Python values on the way (decision 0067)."""
        if is_embedded(self._dsn):
            return await self._post({"sql": sql, "parameters": parameters, "format": fmt})
        return await asyncio.to_thread(self._direct, lambda c: c.raw_query(sql, parameters=parameters, fmt=fmt))

    def _direct(self, call: Callable[[Any], T]) -> T:
        """``call`` with the read-only client of a ClickHouse server (opened on first use, dropped
        after a failure so the next call reconnects)."""
        try:
            if self._client is None:
                self._client = _client(self._dsn, settings={"readonly": 1})
                self._client.database = self.database
            try:
                return call(self._client)
            except Exception as e:  # noqa: BLE001 - the driver's errors, mapped at the boundary
                raise _driver_error(e, "query") from e
        except WarehouseError as e:
            self._client = None
            raise Unavailable(f"the warehouse failed: {type(e).__name__}") from e

    async def ping(self) -> bool:
        if is_embedded(self._dsn):
            return self._endpoint() is not None
        try:
            await self.query("SELECT 1 AS ok", {})
            return True
        except Unavailable:
            return False
