"""POST /events (role publisher): one JSON event or an array of them, validated like `qi publish`."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request

from qi.api.auth import Principal, Role, require
from qi.api.deps import settings, sources
from qi.api.errors import COMMON, BadRequest, UnsupportedMediaType
from qi.api.models import EventResult, PublishResult
from qi.api.sources.container import ApiSources
from qi.config import ApiSettings

router = APIRouter(tags=["ingestion"], responses=COMMON)

_BODY_DOC = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "oneOf": [{"type": "object", "additionalProperties": True},
                  {"type": "array", "items": {"type": "object", "additionalProperties": True}, "maxItems": 1000}]},
        "example": {"event_type": "SensorReading", "occurred_at": "2026-11-01T10:00:00Z", "twin_id": "gauge-0001",
                    "sensor_id": "s1", "quantity": "pressure", "value": 101.2, "unit": "kPa"}}}}}


@router.post("/events", response_model=PublishResult, openapi_extra=_BODY_DOC,
             summary="publish JSON events (one object or an array); an answer per event")
async def post_events(request: Request, principal: Principal = Depends(require(Role.publisher)),
                      src: ApiSources = Depends(sources), cfg: ApiSettings = Depends(settings)) -> PublishResult:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise UnsupportedMediaType(f"expected Content-Type application/json, got {ctype or 'none'!r}")
    raw = await request.body()
    try:
        body: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"the body is not JSON: {e}") from None
    items = body if isinstance(body, list) else [body]
    if not items:
        raise BadRequest("no events: send an object or a non-empty array")
    if len(items) > cfg.max_batch_events:
        raise BadRequest(f"{len(items)} events in one request; at most {cfg.max_batch_events} (QI_API_MAX_BATCH_EVENTS)")
    results = await src.ingest.publish(items, source=f"qi-api:{principal.subject}")
    published = sum(r["status"] == "published" for r in results)
    return PublishResult(published=published, rejected=len(results) - published,
                         results=[EventResult(**r) for r in results])
