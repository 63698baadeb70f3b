"""Sensors: the latest reading and score (Redis), a time range of readings and scores (ClickHouse),
downsampled server-side into at most ``max_points`` time buckets (role reader)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response

from qi.api.auth import Role, require
from qi.api.deps import settings, sources
from qi.api.errors import COMMON, BadRequest
from qi.api.models import Reading, ReadingSeries, Score, SensorLatest
from qi.api.routers.params import SensorId, TwinId
from qi.api.series import POINT_COLUMNS, SERIES_FORMAT, ZERO_UUID, SeriesBatcher
from qi.api.sources.container import ApiSources
from qi.config import ApiSettings

router = APIRouter(prefix="/sensors", tags=["sensors"], responses=COMMON, dependencies=[Depends(require(Role.reader))])

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: ``max_points``: its default and bounds
DEFAULT_POINTS, MIN_POINTS, MAX_POINTS = 1000, 10, 5000

#: one query: readings bucketed by time, each joined to its score (by the reading's event id); the
#: engine writes each bucket as the ReadingSeries point object itself (``SERIES_FORMAT``: one JSON
#: object per line, time as ISO 8601 like ``_iso``), so nothing is decoded into Python values on the
#: way (decision 0067)
SERIES_SQL = """
SELECT {points}
FROM (
    SELECT b, min(rt) AS first_t, avg(rv) AS mean, min(rv) AS vmin, max(rv) AS vmax, count() AS n,
           countIf(sid != toUUID('{zero}')) AS scored, maxIf(sc, sid != toUUID('{zero}')) AS top_score,
           max(an) AS any_anomaly
    FROM (
        SELECT intDiv(toUnixTimestamp64Micro(r.occurred_at) - {{from_us:Int64}}, {{bucket_us:Int64}}) AS b,
               r.occurred_at AS rt, r.value AS rv, s.reading_event_id AS sid, s.score AS sc,
               toUInt8(s.is_anomaly) AS an
        FROM (SELECT event_id, occurred_at, value FROM readings FINAL
              WHERE twin_id = {{twin:String}} AND sensor_id = {{sensor:String}}
                AND occurred_at >= fromUnixTimestamp64Micro({{from_us:Int64}}, 'UTC')
                AND occurred_at < fromUnixTimestamp64Micro({{to_us:Int64}}, 'UTC')) AS r
        LEFT JOIN (SELECT reading_event_id, score, is_anomaly FROM scores FINAL
                   WHERE twin_id = {{twin:String}} AND sensor_id = {{sensor:String}}
                     AND occurred_at >= fromUnixTimestamp64Micro({{from_us:Int64}}, 'UTC')
                     AND occurred_at < fromUnixTimestamp64Micro({{to_us:Int64}}, 'UTC')) AS s
        ON s.reading_event_id = r.event_id
    )
    GROUP BY b
)
ORDER BY b
""".format(zero=ZERO_UUID, points=POINT_COLUMNS)


def _us(t: datetime) -> int:
    return (t - _EPOCH) // timedelta(microseconds=1)


def _ts(us: int | None) -> datetime | None:
    return None if us is None else datetime.fromtimestamp(us / 1e6, UTC)


@router.get("/{twin_id}/{sensor_id}/latest", response_model=SensorLatest, summary="latest reading and score (Redis)")
async def latest(twin_id: TwinId, sensor_id: SensorId, src: ApiSources = Depends(sources)) -> SensorLatest:
    reading, score = await src.lookups.sensor(twin_id, sensor_id)
    return SensorLatest(
        twin_id=twin_id, sensor_id=sensor_id,
        reading=Reading(**{**reading, "occurred_at": _ts(reading.get("occurred_at"))}) if reading else None,
        score=Score(**{**score, "occurred_at": _ts(score.get("occurred_at"))}) if score else None)


@dataclass(frozen=True)
class SeriesAsk:
    """One readings request, checked: the range and its bucket width in microseconds."""

    twin_id: str
    sensor_id: str
    from_: datetime
    to: datetime
    f_us: int
    t_us: int
    bucket_us: int


def series_ask(twin_id: str, sensor_id: str, from_: datetime | None, to: datetime | None, max_points: int,
               cfg: ApiSettings) -> SeriesAsk:
    """The request's range and buckets; :class:`BadRequest` naming the parameter otherwise. Both the
    FastAPI route and the lean path (qi/api/fastpath.py) call this, so they judge alike."""
    for name, t in (("from", from_), ("to", to)):
        if t is not None and t.tzinfo is None:
            raise BadRequest(f"{name} needs a time zone (e.g. 2026-11-01T00:00:00Z)", field=name)
        if t is not None and not (datetime(1971, 1, 1, tzinfo=UTC) <= t <= datetime(2200, 1, 1, tzinfo=UTC)):
            raise BadRequest(f"{name} is outside 1971-2200", field=name)
    # default: up to the next whole second, so viewers of the same live chart share one query
    to = to or datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    from_ = from_ or to - timedelta(hours=24)
    if from_ >= to:
        raise BadRequest("from must be before to", field="from")
    if to - from_ > timedelta(days=cfg.max_range_days):
        raise BadRequest(f"the range is longer than {cfg.max_range_days:g} days (QI_API_MAX_RANGE_DAYS)", field="from")
    points_max = min(max_points, cfg.max_points)
    f_us, t_us = _us(from_), _us(to)
    return SeriesAsk(twin_id, sensor_id, from_, to, f_us, t_us, max(1, math.ceil((t_us - f_us) / points_max)))


async def series_body(state, ask: SeriesAsk) -> bytes:
    """The ReadingSeries document of ``ask`` (``state``: the app's state): requests of a sensor that
    arrive together share a query (decision 0068), viewers of the same chart one serialisation (0112)."""
    batcher = getattr(state, "series", None)
    if batcher is None:  # one per app (per process)
        batcher = state.series = SeriesBatcher(state.sources.warehouse.query_raw)

    async def make() -> bytes:
        downsampled, points = await batcher.points(ask.twin_id, ask.sensor_id, (ask.f_us, ask.t_us, ask.bucket_us))
        return series_json(ask.twin_id, ask.sensor_id, ask.from_, ask.to, ask.bucket_us, downsampled, points)

    key = (ask.twin_id, ask.sensor_id, ask.f_us, ask.t_us, ask.bucket_us)
    return await state.shared.get(key, make, ttl_s=state.settings.cache_s)


@router.get("/{twin_id}/{sensor_id}/readings", response_model=ReadingSeries,
            summary="readings and scores in [from, to), at most max_points buckets (ClickHouse)")
async def readings(
    twin_id: TwinId, sensor_id: SensorId,
    from_: Annotated[datetime | None, Query(alias="from", description="ISO 8601 with zone; default: to - 24 h")] = None,
    to: Annotated[datetime | None, Query(description="ISO 8601 with zone; default: now")] = None,
    max_points: Annotated[int, Query(ge=MIN_POINTS, le=MAX_POINTS)] = DEFAULT_POINTS,
    *, request: Request, cfg: ApiSettings = Depends(settings),
) -> Response:
    """Also answered by the lean path ahead of FastAPI (qi/api/fastpath.py, decision 0129) when the
    request is in the plain form; this route answers the rest and declares the schema."""
    ask = series_ask(twin_id, sensor_id, from_, to, max_points, cfg)
    return Response(await series_body(request.app.state, ask), media_type="application/json")


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def series_json(twin_id: str, sensor_id: str, from_: datetime, to: datetime, bucket_us: int,
                downsampled: bool, points: bytes) -> bytes:
    """The ReadingSeries document (models.ReadingSeries) around the engine's JSON text of the points
    array (decision 0121): the head by orjson, the points as the engine wrote them, not parsed."""
    head = orjson.dumps({"twin_id": twin_id, "sensor_id": sensor_id, "from": _iso(from_), "to": _iso(to),
                         "bucket_s": bucket_us / 1e6, "downsampled": downsampled})
    return b"".join((head[:-1], b',"points":', points, b"}"))
