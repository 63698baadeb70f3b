"""GET /verify/{certificate_id}: public, rate-limited per client (docs/decisions/0111).

The answer is built by :class:`qi.api.verification.Verifications` (status from Redis every
request, the rest cached briefly, decision 0112). This route is what the OpenAPI schema documents
and what answers when the lean path (qi/api/fastpath.py, decision 0120) defers to FastAPI; the
lean path serves the same answer for well-formed ids without FastAPI's per-request cost.
"""

from __future__ import annotations

import structlog
from fastapi import APIRouter, Depends, Request, Response

from qi.api.deps import sources
from qi.api.errors import COMMON, TooManyRequests
from qi.api.models import Verification
from qi.api.ratelimit import retry_after
from qi.api.routers.params import CertificateId
from qi.api.sources.container import ApiSources

log = structlog.get_logger(__name__)
router = APIRouter(tags=["verification"], responses=COMMON)


async def rate_limited(request: Request) -> None:
    bucket = request.app.state.verify_bucket
    client = request.client.host if request.client else "-"
    wait = bucket.take(client)
    if wait > 0:
        log.warning("api.denied", status=429, reason="rate", path=request.url.path, client=client)
        raise TooManyRequests(f"too many verification requests; retry in {wait:.1f} s",
                              headers={"Retry-After": retry_after(wait)})


@router.get("/verify/{certificate_id}", response_model=Verification, dependencies=[Depends(rate_limited)],
            summary="PUBLIC: is this certificate valid? status, signatures, issuer key, audit inclusion proof")
async def verify(certificate_id: CertificateId, request: Request, src: ApiSources = Depends(sources)) -> Response:
    doc = await request.app.state.verify_cache.answer(src, certificate_id)
    return Response(doc, media_type="application/json", headers={"Cache-Control": "no-store"})
