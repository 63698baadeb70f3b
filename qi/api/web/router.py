"""The dashboard's routes: pages under /ui, their assets, the live SSE stream, a sensor list.

Pages and assets are public (they hold no data); the data comes from the JSON API with the
user's bearer token, and /ui/live and /ui/api/sensors need the reader role like every read
endpoint. /verify is public, so the verification page works without a token.
"""

from __future__ import annotations

import json
import time
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from qi.api.auth import Role, require
from qi.api.deps import sources
from qi.api.errors import COMMON, NotFound, Unavailable
from qi.api.routers.params import ID_PATTERN, CertificateId, TwinId
from qi.api.sources.container import ApiSources
from qi.api.web.assets import SECURITY_HEADERS, Assets
from qi.api.web.live import FeedFull, LiveFeed, Subscription

log = structlog.get_logger("qi.api.web")

SENSORS_SQL = """
SELECT r.twin_id AS twin_id, r.sensor_id AS sensor_id, r.q AS quantity, r.u AS unit, r.last_t AS last_at,
       r.last_v AS latest_value, r.cnt AS readings, s.last_s AS latest_score, s.last_a AS latest_anomaly,
       s.has AS scored
FROM (SELECT twin_id, sensor_id, any(quantity) AS q, any(unit) AS u, max(occurred_at) AS last_t,
             argMax(value, occurred_at) AS last_v, count() AS cnt
      FROM readings WHERE ({twin:String} = '' OR twin_id = {twin:String})
      GROUP BY twin_id, sensor_id ORDER BY twin_id, sensor_id LIMIT {n:UInt32}) AS r
LEFT JOIN (SELECT twin_id, sensor_id, argMax(score, occurred_at) AS last_s,
                  argMax(is_anomaly, occurred_at) AS last_a, toUInt8(1) AS has
           FROM scores WHERE ({twin:String} = '' OR twin_id = {twin:String})
           GROUP BY twin_id, sensor_id) AS s
ON r.twin_id = s.twin_id AND r.sensor_id = s.sensor_id
ORDER BY twin_id, sensor_id
"""


class SensorSummary(BaseModel):
    twin_id: str
    sensor_id: str
    quantity: str | None = None
    unit: str | None = None
    last_at: datetime = Field(description="time of the sensor's latest reading")
    value: float | None = Field(None, description="its latest reading")
    readings: int = Field(description="readings in the warehouse (duplicates not yet merged included)")
    score: float | None = Field(None, description="its latest anomaly score; null if not scored yet")
    is_anomaly: bool | None = None


class SensorList(BaseModel):
    items: list[SensorSummary]


def _utc(v: Any) -> datetime:
    t = v if isinstance(v, datetime) else datetime.fromisoformat(str(v))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _sse(event: str, data: str) -> str:
    return f"event: {event}\ndata: {data}\n\n"


def _feed(request: Request) -> LiveFeed:
    feed = getattr(request.app.state, "live_feed", None)
    if feed is None:
        raise Unavailable("the live feed is not configured in this app (Platform.api_app wires it)")
    return feed


@asynccontextmanager
async def _lifespan(app: FastAPI):
    app.state.web_assets = Assets()
    try:
        yield
    finally:
        feed = getattr(app.state, "live_feed", None)
        if feed is not None:
            await feed.close()


def _page(request: Request, name: str) -> FileResponse:
    asset = request.app.state.web_assets.pages[name]
    return FileResponse(asset.path, media_type=asset.media_type,
                        headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})


async def _stream(request: Request, feed: LiveFeed, sub: Subscription):
    cfg = feed.config
    state = None
    deadline = time.monotonic() + cfg.max_stream_s
    try:
        yield "retry: 2000\n\n"
        while time.monotonic() < deadline:
            if feed.state != state:
                state = feed.state
                yield _sse("status", json.dumps({"state": state}))
            batch = await sub.next_batch(min(cfg.heartbeat_s, 1.0) if state != "live" else cfg.heartbeat_s)
            if batch is None:
                yield _sse("status", json.dumps({"state": "closed"}))
                return
            if batch:
                yield f"id: {feed.event_id(sub)}\n" + _sse("items", "[" + ",".join(batch) + "]")
            elif feed.state == state:
                yield ": keep-alive\n\n"
        yield _sse("status", json.dumps({"state": "reconnect"}))
    finally:
        feed.unsubscribe(sub)
        if sub.dropped:
            log.info("live_client_dropped_items", dropped=sub.dropped, client=request.client.host if request.client else "-")


def router() -> APIRouter:
    r = APIRouter(lifespan=_lifespan)
    reader = [Depends(require(Role.reader))]

    @r.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/ui", status_code=307)

    @r.get("/ui", include_in_schema=False)
    async def overview(request: Request) -> FileResponse:
        return _page(request, "overview")

    @r.get("/ui/verify", include_in_schema=False)
    async def verify_page(request: Request) -> FileResponse:
        return _page(request, "verify")

    @r.get("/ui/twins/{twin_id}", include_in_schema=False)
    async def twin_page(request: Request, twin_id: TwinId) -> FileResponse:
        return _page(request, "twin")

    @r.get("/ui/certificates/{certificate_id}", include_in_schema=False)
    async def certificate_page(request: Request, certificate_id: CertificateId) -> FileResponse:
        return _page(request, "certificate")

    @r.get("/ui/static/{name:path}", include_in_schema=False)
    async def static(request: Request, name: str) -> Response:
        asset = request.app.state.web_assets.static.get(name)
        if asset is None:
            raise NotFound(f"no such file: {name[:100]}")
        headers = {**SECURITY_HEADERS, "ETag": asset.etag, "Cache-Control": "no-cache"}
        if request.headers.get("if-none-match") == asset.etag:
            return Response(status_code=304, headers=headers)
        return FileResponse(asset.path, media_type=asset.media_type, headers=headers)

    @r.get("/ui/live", include_in_schema=False, dependencies=reader)
    async def live(request: Request,
                   twin: Annotated[str | None, Query(pattern=ID_PATTERN, description="only this twin")] = None,
                   ) -> StreamingResponse:
        """Server-sent events: `status` ({state}) and `items` (a JSON array of readings, scores, alerts)."""
        feed = _feed(request)
        try:
            sub = feed.subscribe(twin, request.headers.get("last-event-id"))
        except FeedFull as e:
            raise Unavailable(f"{e}; retry later") from e
        return StreamingResponse(_stream(request, feed, sub), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @r.get("/ui/api/sensors", response_model=SensorList, tags=["dashboard"], responses=COMMON, dependencies=reader,
           summary="every sensor with its latest reading and score (ClickHouse), for the dashboard")
    async def sensor_list(
        src: Annotated[ApiSources, Depends(sources)],
        twin: Annotated[str | None, Query(pattern=ID_PATTERN, description="only this twin's sensors")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 500,
    ) -> SensorList:
        rows = await src.warehouse.query(SENSORS_SQL, {"twin": twin or "", "n": limit})
        return SensorList(items=[SensorSummary(
            twin_id=row["twin_id"], sensor_id=row["sensor_id"], quantity=row["quantity"], unit=row["unit"],
            last_at=_utc(row["last_at"]), value=row["latest_value"], readings=row["readings"],
            score=row["latest_score"] if row["scored"] else None,
            is_anomaly=bool(row["latest_anomaly"]) if row["scored"] else None) for row in rows])

    return r
