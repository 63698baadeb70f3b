"""Alerts: recent anomaly alerts, newest first, optionally of one twin/sensor (role reader)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from qi.api.auth import Role, require
from qi.api.deps import settings, sources
from qi.api.errors import COMMON, BadRequest
from qi.api.models import Alert, AlertPage
from qi.api.routers.params import ID_PATTERN
from qi.api.sources.container import ApiSources
from qi.config import ApiSettings

router = APIRouter(prefix="/alerts", tags=["alerts"], responses=COMMON, dependencies=[Depends(require(Role.reader))])

ALERTS_SQL = """
SELECT twin_id, sensor_id, occurred_at, state, score, threshold, toString(event_id) AS event_id
FROM alerts FINAL
WHERE ({twin:String} = '' OR twin_id = {twin:String}) AND ({sensor:String} = '' OR sensor_id = {sensor:String})
  AND occurred_at < fromUnixTimestamp64Micro({before_us:Int64}, 'UTC')
ORDER BY occurred_at DESC, event_id DESC
LIMIT {n:UInt32}
"""


@router.get("", response_model=AlertPage, summary="recent alerts (RAISED / CLEARED), newest first")
async def list_alerts(
    twin_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    sensor_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    before: Annotated[datetime | None, Query(description="only alerts before this time (the previous page's next_before)")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    src: ApiSources = Depends(sources), cfg: ApiSettings = Depends(settings),
) -> AlertPage:
    if before is not None and before.tzinfo is None:
        raise BadRequest("before needs a time zone", field="before")
    if before is not None and not (datetime(1971, 1, 1, tzinfo=UTC) <= before <= datetime(2200, 1, 1, tzinfo=UTC)):
        raise BadRequest("before is outside 1971-2200", field="before")
    limit = min(limit, cfg.max_page)
    before = before or datetime(2200, 1, 1, tzinfo=UTC)
    before_us = int((before - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1_000_000)
    rows = await src.warehouse.query(ALERTS_SQL, {"twin": twin_id or "", "sensor": sensor_id or "",
                                                  "before_us": before_us, "n": limit + 1})
    more = len(rows) > limit
    items = [Alert(**r) for r in rows[:limit]]
    return AlertPage(items=items, next_before=items[-1].occurred_at if more else None)
