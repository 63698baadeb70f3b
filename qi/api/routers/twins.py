"""Twins: search, one twin with relations and certificates, its history (role reader)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from qi.api.auth import Role, require
from qi.api.deps import settings, sources
from qi.api.errors import COMMON, BadRequest, NotFound
from qi.api.models import CertificateSummary, HistoryEvent, Relation, Twin, TwinDetail, TwinHistory, TwinPage
from qi.api.routers.params import Cursor, FilterText, TwinId
from qi.api.sources.container import ApiSources
from qi.config import ApiSettings

router = APIRouter(prefix="/twins", tags=["twins"], responses=COMMON, dependencies=[Depends(require(Role.reader))])

TWIN_EVENTS = ("TwinRegistered", "TwinAttributesChanged", "TwinRelated", "TwinUnrelated", "TwinDecommissioned")


def parse_attr_filters(attr: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for a in attr:
        k, sep, v = a.partition("=")
        if not sep or not k:
            raise BadRequest(f"attr filter {a[:80]!r} is not KEY=VALUE", field="attr")
        out[k] = v
    return out


@router.get("", response_model=TwinPage, summary="search twins by status, kind, owner and attributes")
async def list_twins(
    status: Annotated[str | None, Query(pattern="^(active|decommissioned)$")] = None,
    kind: FilterText = None,
    owner: FilterText = None,
    attr: Annotated[list[str], Query(max_length=20, description="KEY=VALUE, repeatable; all must match")] = [],  # noqa: B006
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=500, description="page size (at most QI_API_MAX_PAGE, 500)")] = 50,
    src: ApiSources = Depends(sources), cfg: ApiSettings = Depends(settings),
) -> TwinPage:
    for a in attr:
        if len(a) > 400:
            raise BadRequest("an attr filter is longer than 400 characters", field="attr")
        if any(ord(ch) < 0x20 or ord(ch) == 0x7f for ch in a):
            raise BadRequest("an attr filter contains control characters", field="attr")
    limit = min(limit, cfg.max_page)
    rows = await src.registry.twins(status=status, kind=kind, owner=owner, attributes=parse_attr_filters(attr),
                                    after=cursor, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return TwinPage(items=[Twin(**r) for r in rows], next_cursor=rows[-1]["twin_id"] if more else None)


@router.get("/{twin_id}", response_model=TwinDetail, summary="one twin: state, relationships, certificates")
async def get_twin(twin_id: TwinId, src: ApiSources = Depends(sources)) -> TwinDetail:
    row = await src.registry.twin(twin_id)
    if row is None:
        raise NotFound(f"no twin {twin_id!r}", field="twin_id")
    rels = await src.registry.relations(twin_id)
    certs = await src.registry.certificates(status=None, twin_id=twin_id, expiring_before=None, after=None, limit=500)
    return TwinDetail(twin=Twin(**row), relations=[Relation(**r) for r in rels],
                      certificates=[CertificateSummary(**c) for c in certs])


@router.get("/{twin_id}/history", response_model=TwinHistory, summary="the twin's events, oldest first (warehouse)")
async def twin_history(
    twin_id: TwinId,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
    src: ApiSources = Depends(sources),
) -> TwinHistory:
    rows = await src.warehouse.query(
        "SELECT toString(event_id) AS event_id, event_type, occurred_at, recorded_at, payload FROM events FINAL "
        "WHERE aggregate_id = {twin:String} AND event_type IN {types:Array(String)} "
        "ORDER BY occurred_at, event_id LIMIT {n:UInt32}",
        {"twin": twin_id, "types": list(TWIN_EVENTS), "n": limit + 1})
    import json

    events = [HistoryEvent(event_id=r["event_id"], event_type=r["event_type"], occurred_at=r["occurred_at"],
                           recorded_at=r["recorded_at"], payload=json.loads(r["payload"] or "{}")) for r in rows[:limit]]
    if not events and await src.registry.twin(twin_id) is None:
        raise NotFound(f"no twin {twin_id!r}", field="twin_id")
    return TwinHistory(twin_id=twin_id, events=events, truncated=len(rows) > limit)
