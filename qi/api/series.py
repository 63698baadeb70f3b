"""Sensor series requests of one sensor that arrive together become one warehouse query.

The engine spends most of a series query analysing and planning it (~14 of ~20 ms for a day of
one sensor), not reading rows, so while a query for a sensor is in flight, later requests for that
sensor wait and then go together: one query, the ranges as an array (``BATCH_SQL``), each
request's buckets computed exactly as ``routers.sensors.SERIES_SQL`` computes them for its range
alone. Nothing is cached: every request is answered by a query that started after it arrived
(decision 0068).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

ZERO_UUID = "00000000-0000-0000-0000-000000000000"
#: one bucket as the API's point object (models.Point), written by the engine: time as ISO 8601 like
#: ``routers.sensors._iso``, ``n`` as UInt32 (JSON would quote a UInt64), score null when unscored
POINT_COLUMNS = """concat(formatDateTime(first_t, '%Y-%m-%dT%H:%i:%S', 'UTC'),
              if(toUnixTimestamp64Micro(first_t) % 1000000 = 0, '',
                 concat('.', leftPad(toString(toUnixTimestamp64Micro(first_t) % 1000000), 6, '0'))), 'Z') AS t,
       mean AS value, vmin AS min, vmax AS max, toUInt32(n) AS n,
       if(scored > 0, top_score, NULL) AS score, toBool(any_anomaly) AS anomaly"""
#: one JSON object per line, passed through the owner's endpoint as the engine wrote it (0067)
SERIES_FORMAT = "JSONEachRow"

#: the ranges of one batch: [(k, from_us, to_us, bucket_us), ...]; readings in [lo, hi) read once
BATCH_SQL = f"""
SELECT k, {POINT_COLUMNS}
FROM (
    SELECT k, b, min(rt) AS first_t, avg(rv) AS mean, min(rv) AS vmin, max(rv) AS vmax, count() AS n,
           countIf(sid != toUUID('{ZERO_UUID}')) AS scored, maxIf(sc, sid != toUUID('{ZERO_UUID}')) AS top_score,
           max(an) AS any_anomaly
    FROM (
        SELECT q.1 AS k, intDiv(toUnixTimestamp64Micro(r.occurred_at) - q.2, q.4) AS b,
               r.occurred_at AS rt, r.value AS rv,
               if(s.occurred_at >= fromUnixTimestamp64Micro(q.2, 'UTC')
                  AND s.occurred_at < fromUnixTimestamp64Micro(q.3, 'UTC'), s.reading_event_id,
                  toUUID('{ZERO_UUID}')) AS sid,
               s.score AS sc, if(sid != toUUID('{ZERO_UUID}'), toUInt8(s.is_anomaly), 0) AS an
        FROM (SELECT event_id, occurred_at, value FROM readings FINAL
              WHERE twin_id = {{twin:String}} AND sensor_id = {{sensor:String}}
                AND occurred_at >= fromUnixTimestamp64Micro({{lo_us:Int64}}, 'UTC')
                AND occurred_at < fromUnixTimestamp64Micro({{hi_us:Int64}}, 'UTC')) AS r
        LEFT JOIN (SELECT reading_event_id, occurred_at, score, is_anomaly FROM scores FINAL
                   WHERE twin_id = {{twin:String}} AND sensor_id = {{sensor:String}}
                     AND occurred_at >= fromUnixTimestamp64Micro({{lo_us:Int64}}, 'UTC')
                     AND occurred_at < fromUnixTimestamp64Micro({{hi_us:Int64}}, 'UTC')) AS s
        ON s.reading_event_id = r.event_id
        ARRAY JOIN {{ranges:Array(Tuple(UInt32, Int64, Int64, Int64))}} AS q
        WHERE toUnixTimestamp64Micro(r.occurred_at) >= q.2 AND toUnixTimestamp64Micro(r.occurred_at) < q.3
    )
    GROUP BY k, b
)
ORDER BY k, b
"""

_FLOATS = ("value", "min", "max", "score")
Range = tuple[int, int, int]  # from_us, to_us, bucket_us
RunQuery = Callable[[str, dict[str, Any], str], Awaitable[bytes]]


class SeriesBatcher:
    """``points(twin, sensor, range)``: the range's point objects. Requests for a sensor that arrive
    while its query runs go together in the next one (at most ``max_ranges`` per query)."""

    def __init__(self, run: RunQuery, *, max_ranges: int = 64) -> None:
        self._run = run
        self._max = max_ranges
        self._waiting: dict[tuple[str, str], list[tuple[Range, asyncio.Future]]] = defaultdict(list)
        self._draining: set[tuple[str, str]] = set()
        self.queries = 0

    async def points(self, twin: str, sensor: str, rng: Range) -> list[dict[str, Any]]:
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        key = (twin, sensor)
        self._waiting[key].append((rng, fut))
        if key not in self._draining:
            self._draining.add(key)
            asyncio.get_running_loop().create_task(self._drain(key))
        return await fut

    async def _drain(self, key: tuple[str, str]) -> None:
        try:
            while self._waiting.get(key):
                batch = self._waiting[key][:self._max]
                del self._waiting[key][:self._max]
                live = [(r, f) for r, f in batch if not f.done()]  # a request given up on
                if not live:
                    continue
                try:
                    per = await self._query(key, [r for r, _ in live])
                except Exception as e:  # noqa: BLE001 - handed to every request of the batch
                    for _, f in live:
                        if not f.done():
                            f.set_exception(e)
                    continue
                for k, (_, f) in enumerate(live):
                    if not f.done():
                        f.set_result(per[k])
        finally:
            self._draining.discard(key)
            if not self._waiting.get(key):
                self._waiting.pop(key, None)

    async def _query(self, key: tuple[str, str], ranges: list[Range]) -> list[list[dict[str, Any]]]:
        twin, sensor = key
        params = {"twin": twin, "sensor": sensor, "lo_us": min(f for f, _, _ in ranges),
                  "hi_us": max(t for _, t, _ in ranges),
                  # integers only, formatted here: ClickHouse's text form of the array parameter
                  "ranges": "[" + ",".join(f"({k},{int(f)},{int(t)},{int(b)})"
                                           for k, (f, t, b) in enumerate(ranges)) + "]"}
        self.queries += 1
        body = await self._run(BATCH_SQL, params, SERIES_FORMAT)
        per: list[list[dict[str, Any]]] = [[] for _ in ranges]
        for p in orjson.loads(b"[" + b",".join(body.splitlines()) + b"]"):
            k = p.pop("k")
            for name in _FLOATS:  # the engine writes 100.0 as 100: keep the schema's floats floats
                if type(p[name]) is int:
                    p[name] = float(p[name])
            per[k].append(p)
        return per
