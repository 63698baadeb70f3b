"""Certificates: list with filters, one certificate with its latest checks and history (role reader)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from qi.api.auth import Role, require
from qi.api.deps import settings, sources
from qi.api.errors import COMMON, NotFound
from qi.api.models import CertificateDetail, CertificateEvent, CertificatePage, CertificateSummary, Check, Validation
from qi.api.routers.params import ID_PATTERN, CertificateId, Cursor
from qi.api.sources.container import ApiSources
from qi.config import ApiSettings

router = APIRouter(prefix="/certificates", tags=["certificates"], responses=COMMON,
                   dependencies=[Depends(require(Role.reader))])

Status = Literal["valid", "invalid", "revoked", "superseded", "expired", "issued"]


@router.get("", response_model=CertificatePage, summary="certificates by status, twin, or expiring within N days")
async def list_certificates(
    status: Status | None = None,
    twin_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    expiring_within_days: Annotated[int | None, Query(ge=0, le=3650, description="valid now, ends within N days")] = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    src: ApiSources = Depends(sources), cfg: ApiSettings = Depends(settings),
) -> CertificatePage:
    limit = min(limit, cfg.max_page)
    before = datetime.now(UTC) + timedelta(days=expiring_within_days) if expiring_within_days is not None else None
    rows = await src.registry.certificates(status=status, twin_id=twin_id, expiring_before=before, after=cursor,
                                           limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return CertificatePage(items=[CertificateSummary(**r) for r in rows],
                           next_cursor=rows[-1]["certificate_id"] if more else None)


def validation_of(row: dict) -> Validation | None:
    if row.get("verdict") is None:
        return None
    return Validation(verdict=row["verdict"], validated_at=row.get("validated_at"),
                      certificate_version=row.get("certificate_version"),
                      validator_version=row.get("validator_version"),
                      checks=[Check(**c) for c in (row.get("checks") or [])])


@router.get("/{certificate_id}", response_model=CertificateDetail,
            summary="current status with the checks of the latest validation, and the history")
async def get_certificate(certificate_id: CertificateId, src: ApiSources = Depends(sources)) -> CertificateDetail:
    row = await src.registry.certificate(certificate_id)
    if row is None:
        raise NotFound(f"no certificate {certificate_id!r}", field="certificate_id")
    history = await src.registry.certificate_history(certificate_id)
    fields = {k: row.get(k) for k in ("twin_id", "certificate_kind", "issuer_id", "issuer_name", "issued_at",
                                       "valid_from", "valid_until", "lifecycle", "revoked_by", "reason", "superseded_by")}
    return CertificateDetail(certificate_id=certificate_id, status=row["status"], **fields,
                             validation=validation_of(row),
                             history=[CertificateEvent(event_id=h["event_id"], event_type=h["event_type"],
                                                       occurred_at=h["occurred_at"], detail=h.get("detail") or {})
                                      for h in history])
