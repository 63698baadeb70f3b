"""Sensor series requests of one sensor that arrive together become one warehouse query.

The engine spends most of a series query analysing and planning it (~14 of ~20 ms for a day of
one sensor), not reading rows, so while a query for a sensor is in flight, later requests for that
sensor wait and then go together: one query, the ranges as an array (``BATCH_SQL``), each
request's buckets computed exactly as ``routers.sensors.SERIES_SQL`` computes them for its range
alone. Nothing is cached: every request is answered by a query that started after it arrived
(decision 0068).

The engine writes each range's whole ``points`` array as JSON text (one line per range, in
``BATCH_FORMAT``), so the API splits the answer into ranges and puts each array into its document
as bytes, without reading a point into Python (decision 0121).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from qi.api.errors import Unavailable

ZERO_UUID = "00000000-0000-0000-0000-000000000000"
#: the bucket's first reading time as ISO 8601 like ``routers.sensors._iso`` (no fraction when whole)
_T = """concat(formatDateTime(first_t, '%Y-%m-%dT%H:%i:%S', 'UTC'),
              if(toUnixTimestamp64Micro(first_t) % 1000000 = 0, '',
                 concat('.', leftPad(toString(toUnixTimestamp64Micro(first_t) % 1000000), 6, '0'))), 'Z')"""
#: one bucket as the API's point object (models.Point), written by the engine: time as ISO 8601 like
#: ``routers.sensors._iso``, ``n`` as UInt32 (JSON would quote a UInt64), score null when unscored
POINT_COLUMNS = f"""{_T} AS t,
       mean AS value, vmin AS min, vmax AS max, toUInt32(n) AS n,
       if(scored > 0, top_score, NULL) AS score, toBool(any_anomaly) AS anomaly"""
#: one JSON object per line, passed through the owner's endpoint as the engine wrote it (0067)
SERIES_FORMAT = "JSONEachRow"


#: a Float64 as a JSON number the way orjson writes a Python float: the engine's shortest text, with
#: ``.0`` when it is integral (100.0, not 100; the engine writes integral values below 1e21 without a
#: point or exponent, and 1e21 and above as 1e21), null when not finite. One lambda applied to the
#: bucket's four numbers: the engine analyses it once, where four copies of the expression cost ~10 ms
#: of planning per query (decision 0125)
NUMBER_JSON = "x -> multiIf(NOT isFinite(x), 'null', x = trunc(x) AND abs(x) < 1e21, concat(toString(x), '.0'), toString(x))"

#: one bucket as the JSON text of the API's point object (models.Point), the time always with its
#: microseconds (the range's text drops ``.000000``, as ``_iso`` does): what orjson writes for the
#: dict ``SERIES_FORMAT`` gives once its integral floats are made floats (byte for byte, but for the
#: spelling of |x| >= 1e16: the engine's 1e21 and 10000000000000000.0 for orjson's 1e+21 and 1e+16);
#: ``nums`` is [mean, min, max, top score or nan when unscored] as JSON text (``NUMBER_JSON``)
POINT_JSON = """concat('{"t":"', formatDateTime(first_t, '%Y-%m-%dT%H:%i:%S.%fZ', 'UTC'),
       '","value":', nums[1], ',"min":', nums[2], ',"max":', nums[3], ',"n":', toString(n),
       ',"score":', nums[4], ',"anomaly":', if(any_anomaly > 0, 'true', 'false'), '}')"""
#: one line per range that has points: ``k``, ``t`` or ``f`` (downsampled: a bucket holds more than
#: one reading), the points array; no line for a range without points
BATCH_FORMAT = "RawBLOB"

#: the ranges of one batch: [(k, from_us, to_us, bucket_us), ...]; readings in [lo, hi) read once.
#: A score counts for a bucket when it joined its reading (a real reading_event_id) and lies in the
#: range (``ok``). Written for the planner: the engine spends most of a query analysing it, so each
#: expression appears once (decision 0125)
BATCH_SQL = f"""
SELECT concat(toString(k), if(max(n) > 1, ' t [', ' f ['),
              replaceAll(arrayStringConcat(arrayMap(x -> x.2, arraySort(x -> x.1, groupArray((b, {POINT_JSON})))),
                                           ','), '.000000Z"', 'Z"'),
              ']\\n')
FROM (
    SELECT k, b, min(rt) AS first_t, count() AS n, max(ok AND sa) AS any_anomaly,
           arrayMap({NUMBER_JSON}, [avg(rv), min(rv), max(rv), if(sum(ok) > 0, maxIf(sc, ok), nan)]) AS nums
    FROM (
        SELECT q.1 AS k, toUnixTimestamp64Micro(r.occurred_at) AS rus, intDiv(rus - q.2, q.4) AS b,
               r.occurred_at AS rt, r.value AS rv, s.score AS sc, s.is_anomaly AS sa,
               s.reading_event_id != toUUID('{ZERO_UUID}') AND toUnixTimestamp64Micro(s.occurred_at) >= q.2
                 AND toUnixTimestamp64Micro(s.occurred_at) < q.3 AS ok
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
        WHERE rus >= q.2 AND rus < q.3
    )
    GROUP BY k, b
)
GROUP BY k
ORDER BY k
"""

Range = tuple[int, int, int]  # from_us, to_us, bucket_us
#: a range's answer: (downsampled, the JSON text of its points array)
Points = tuple[bool, bytes]
RunQuery = Callable[[str, dict[str, Any], str], Awaitable[bytes]]
_NONE: Points = (False, b"[]")


class SeriesAnswerError(Unavailable):
    """The engine's answer to a batch is not in the form ``BATCH_SQL`` writes (503, not a 500)."""


def split_batch(body: bytes, ranges: int) -> list[Points]:
    """``BATCH_SQL``'s answer as one ``Points`` per range (``[]`` for a range without a line)."""
    per = [_NONE] * ranges
    for line in body.split(b"\n"):
        if not line:
            continue
        try:
            k, flag, points = line.split(b" ", 2)
            i = int(k)
            if not (0 <= i < ranges and flag in (b"t", b"f") and points[:1] == b"[" and points[-1:] == b"]"):
                raise ValueError
        except ValueError:
            raise SeriesAnswerError(
                f"the warehouse answered a series line in an unexpected form: {line[:80]!r}") from None
        per[i] = (flag == b"t", points)
    return per


class SeriesBatcher:
    """``points(twin, sensor, range)``: the range's (downsampled, points JSON). Requests for a sensor
    that arrive while its query runs go together in the next one (at most ``max_ranges`` per query).

    After a batch of several, the next query waits for as many requests as that batch had, for at
    most a quarter of the last query's time (and ``max_gather_s``): its clients ask again as soon as
    they have their answers, and without the wait the first of them would go alone, the rest
    queueing behind it (decision 0123). An idle sensor's first request starts its query at once."""

    def __init__(self, run: RunQuery, *, max_ranges: int = 64, max_gather_s: float = 0.05) -> None:
        self._run = run
        self._max = max_ranges
        self._max_gather_s = max_gather_s
        self._waiting: dict[tuple[str, str], list[tuple[Range, asyncio.Future]]] = defaultdict(list)
        self._arrived: dict[tuple[str, str], asyncio.Event] = {}
        self._draining: set[tuple[str, str]] = set()
        self.queries = 0

    async def points(self, twin: str, sensor: str, rng: Range) -> Points:
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        key = (twin, sensor)
        self._waiting[key].append((rng, fut))
        if key not in self._draining:
            self._draining.add(key)
            asyncio.get_running_loop().create_task(self._drain(key))
        else:
            arrived = self._arrived.get(key)
            if arrived is not None:
                arrived.set()
        return await fut

    async def _gather(self, key: tuple[str, str], want: int, wait_s: float) -> None:
        """Wait until ``want`` requests of ``key`` wait, or ``wait_s`` has passed."""
        loop = asyncio.get_running_loop()
        until = loop.time() + wait_s
        arrived = self._arrived[key] = asyncio.Event()
        try:
            while len(self._waiting.get(key, ())) < want and (left := until - loop.time()) > 0:
                arrived.clear()
                try:
                    await asyncio.wait_for(arrived.wait(), left)
                except TimeoutError:
                    break
        finally:
            self._arrived.pop(key, None)

    async def _drain(self, key: tuple[str, str]) -> None:
        last, last_s = 0, 0.0
        loop = asyncio.get_running_loop()
        try:
            while True:
                if last > 1 and len(self._waiting.get(key, ())) < min(last, self._max):
                    await self._gather(key, min(last, self._max), min(self._max_gather_s, last_s / 4))
                if not self._waiting.get(key):
                    break
                batch = self._waiting[key][:self._max]
                del self._waiting[key][:self._max]
                live = [(r, f) for r, f in batch if not f.done()]  # a request given up on
                last = len(live)
                if not live:
                    continue
                started = loop.time()
                try:
                    per = await self._query(key, [r for r, _ in live])
                except Exception as e:  # noqa: BLE001 - handed to every request of the batch
                    last = 0  # no waiting for more after a failure
                    for _, f in live:
                        if not f.done():
                            f.set_exception(e)
                    continue
                last_s = loop.time() - started
                for k, (_, f) in enumerate(live):
                    if not f.done():
                        f.set_result(per[k])
        finally:
            self._draining.discard(key)
            if not self._waiting.get(key):
                self._waiting.pop(key, None)

    async def _query(self, key: tuple[str, str], ranges: list[Range]) -> list[Points]:
        twin, sensor = key
        params = {"twin": twin, "sensor": sensor, "lo_us": min(f for f, _, _ in ranges),
                  "hi_us": max(t for _, t, _ in ranges),
                  # integers only, formatted here: ClickHouse's text form of the array parameter
                  "ranges": "[" + ",".join(f"({k},{int(f)},{int(t)},{int(b)})"
                                           for k, (f, t, b) in enumerate(ranges)) + "]"}
        self.queries += 1
        return split_batch(await self._run(BATCH_SQL, params, BATCH_FORMAT), len(ranges))
