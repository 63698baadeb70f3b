"""The transparency log: the latest signed checkpoint and an event's inclusion proof (role auditor);
the log's public key is public."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends

from qi.api.auth import Role, require
from qi.api.deps import sources
from qi.api.errors import COMMON, NotFound
from qi.api.models import Checkpoint, InclusionProof, LogPublicKey
from qi.api.sources.container import ApiSources

router = APIRouter(prefix="/audit", tags=["audit"], responses=COMMON)
auditor = [Depends(require(Role.auditor))]


@router.get("/checkpoint", response_model=Checkpoint, dependencies=auditor, summary="the latest signed checkpoint")
async def checkpoint(src: ApiSources = Depends(sources)) -> Checkpoint:
    return Checkpoint(**await src.audit.checkpoint())


@router.get("/proof/{event_id}", response_model=InclusionProof, dependencies=auditor,
            summary="the inclusion proof of an event against the latest checkpoint")
async def proof(event_id: uuid.UUID, src: ApiSources = Depends(sources)) -> InclusionProof:
    return InclusionProof(**await src.audit.proof(str(event_id)))


@router.get("/public-key", response_model=LogPublicKey, summary="PUBLIC: the log's public key (Ed25519 + ML-DSA-65)")
async def public_key(src: ApiSources = Depends(sources)) -> LogPublicKey:
    if src.audit.public_key is None:
        raise NotFound("this API has no copy of the log's public key (QI_AUDIT_KEY_DIR)")
    return LogPublicKey(**src.audit.public_key)
