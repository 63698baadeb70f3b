"""GET /registry/as-of: the registry as it was at a time (role auditor), by replaying the registry
topics in memory (projections/pointintime, decision 0044)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from qi.api.auth import Role, require
from qi.api.deps import sources
from qi.api.errors import COMMON, BadRequest
from qi.api.models import RegistryAsOf
from qi.api.routers.params import ID_PATTERN
from qi.api.sources.container import ApiSources

router = APIRouter(prefix="/registry", tags=["audit"], responses=COMMON, dependencies=[Depends(require(Role.auditor))])


@router.get("/as-of", response_model=RegistryAsOf,
            summary="twins, certificates and issuer keys as known (as_of) or true (valid_at) at a time")
async def registry_as_of(
    at: Annotated[datetime, Query(description="ISO 8601 with zone")],
    mode: Literal["as_of", "valid_at"] = "as_of",
    id: Annotated[str | None, Query(pattern=ID_PATTERN, description="only this twin or certificate")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    src: ApiSources = Depends(sources),
) -> RegistryAsOf:
    if at.tzinfo is None:
        raise BadRequest("at needs a time zone (e.g. 2026-11-01T00:00:00Z)", field="at")
    if not (datetime(1971, 1, 1, tzinfo=UTC) <= at <= datetime(2200, 1, 1, tzinfo=UTC)):
        raise BadRequest("at is outside 1971-2200", field="at")
    state, read = await src.history.at(mode, at)
    twins = [t for k, t in sorted(state.twins.items()) if id is None or k == id]
    certs = [c for k, c in sorted(state.certificates.items()) if id is None or k == id]
    keys = [k for _, k in sorted(state.issuer_keys.items())] if id is None else []
    truncated = max(len(twins), len(certs), len(keys)) > limit
    return RegistryAsOf(mode=mode, at=at, records_read=read, events_applied=state.applied, twins=twins[:limit],
                        certificates=certs[:limit], issuer_keys=keys[:limit], truncated=truncated)
