"""GET /verify/{certificate_id}: public, rate-limited per client (docs/decisions/0111).

The status comes from the Redis lookups on every request; the parts that do not change per
request (the issuance's event id, signatures and issuer key, the inclusion proof per tree
size) are cached briefly in the process (``QI_API_CACHE_S``) so verification scales.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from fastapi import APIRouter, Depends, Request, Response

from qi.api.deps import sources
from qi.api.errors import COMMON, NotFound, TooManyRequests, Unavailable
from qi.api.models import (Check, InclusionProof, IssuerKeyAtIssue, LogPublicKey, SignatureInfo, Validation, Verification,
                           VerificationCached, VerificationNow)
from qi.api.ratelimit import retry_after
from qi.api.routers.params import CertificateId
from qi.api.sources.container import ApiSources
from projections.registry import certificate_status

log = structlog.get_logger(__name__)
router = APIRouter(tags=["verification"], responses=COMMON)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ts(us: int | None) -> datetime | None:
    return None if us is None else datetime.fromtimestamp(us / 1e6, UTC)


async def rate_limited(request: Request) -> None:
    bucket = request.app.state.verify_bucket
    client = request.client.host if request.client else "-"
    wait = bucket.take(client)
    if wait > 0:
        log.warning("api.denied", status=429, reason="rate", path=request.url.path, client=client)
        raise TooManyRequests(f"too many verification requests; retry in {wait:.1f} s",
                              headers={"Retry-After": retry_after(wait)})


class _Slow:
    """The per-certificate parts that change rarely, cached for ``ttl_s``."""

    def __init__(self, ttl_s: float, size: int = 10_000) -> None:
        self.ttl_s, self.size = ttl_s, size
        self._d: dict[str, tuple[float, Any]] = {}

    def get(self, k: str) -> Any:
        hit = self._d.get(k)
        return hit[1] if hit and time.monotonic() - hit[0] < self.ttl_s else None

    def put(self, k: str, v: Any) -> None:
        if len(self._d) >= self.size:
            self._d.clear()
        self._d[k] = (time.monotonic(), v)


async def _slow_parts(src: ApiSources, certificate_id: str, issued_at_us: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {"signatures": [], "issuer_key": None, "proof": None, "proof_unavailable": None}
    try:
        event_id = await src.registry.issuance_event_id(certificate_id)
    except Unavailable as e:
        out["proof_unavailable"] = e.detail
        return out
    if event_id is None:
        out["proof_unavailable"] = "the issuance is not in the registry yet"
        return out
    try:
        proof = await src.audit.proof(event_id)
        out["proof"] = proof
    except (NotFound, Unavailable) as e:
        out["proof_unavailable"] = e.detail
        return out
    # the signatures as issued: decoded from the very record the proof covers
    sigs = await src.audit.issued_signatures(proof)
    out["signatures"] = sigs
    key_ids = sorted({s["key_id"] for s in sigs})
    if len(key_ids) == 1:
        key = await src.registry.issuer_key(key_ids[0])
        if key is not None:
            at = _ts(issued_at_us)
            valid = None
            if at is not None:
                valid = (key["valid_from"] is None or key["valid_from"] <= at) and \
                    (key["valid_until"] is None or at < key["valid_until"]) and \
                    (key["revoked_at"] is None or at < key["revoked_at"])
            out["issuer_key"] = {**{k: key.get(k) for k in ("key_id", "issuer_id", "status", "valid_from",
                                                              "valid_until", "revoked_at")}, "valid_at_issue": valid}
        else:
            out["issuer_key"] = {"key_id": key_ids[0], "valid_at_issue": False, "status": "unregistered"}
    return out


@router.get("/verify/{certificate_id}", response_model=Verification, dependencies=[Depends(rate_limited)],
            summary="PUBLIC: is this certificate valid? status, signatures, issuer key, audit inclusion proof")
async def verify(certificate_id: CertificateId, request: Request, src: ApiSources = Depends(sources)) -> Response:
    cert, val = await src.lookups.certificate(certificate_id)
    if cert is None:
        raise NotFound(f"no certificate {certificate_id!r}", field="certificate_id")
    now = datetime.now(UTC)
    now_us = (now - _EPOCH) // timedelta(microseconds=1)
    status = certificate_status(cert.get("lifecycle"), val and val.get("verdict"), cert.get("valid_until"), now_us)
    cache: _Slow = request.app.state.verify_cache
    cached = cache.get(certificate_id)
    if cached is None:
        slow = await _slow_parts(src, certificate_id, cert.get("issued_at"))
        pub = src.audit.public_key
        cached = VerificationCached(
            signatures=[SignatureInfo(**s) for s in slow["signatures"]],
            issuer_key=IssuerKeyAtIssue(**slow["issuer_key"]) if slow["issuer_key"] else None,
            proof=InclusionProof(**slow["proof"]) if slow["proof"] else None,
            proof_unavailable=slow["proof_unavailable"],
            log_public_key=LogPublicKey(**pub) if pub else None,
        ).model_dump_json().encode()
        if slow["proof"] is not None:
            cache.put(certificate_id, cached)
    validation = signature_check = None
    if val is not None:
        checks = [Check(**c) for c in (val.get("checks") or [])]
        validation = Validation(verdict=val.get("verdict"), validated_at=_ts(val.get("validated_at")),
                                certificate_version=val.get("certificate_version"),
                                validator_version=val.get("validator_version"), checks=checks)
        signature_check = next((c for c in checks if c.check == "signature"), None)
    current = VerificationNow(
        certificate_id=certificate_id, status=status, checked_at=now, twin_id=cert.get("twin_id"),
        issuer_id=cert.get("issuer_id"), issued_at=_ts(cert.get("issued_at")), valid_from=_ts(cert.get("valid_from")),
        valid_until=_ts(cert.get("valid_until")), validation=validation, signature_check=signature_check,
    ).model_dump_json().encode()
    # the two halves are JSON objects with disjoint keys: one object of both (the Verification schema)
    return Response(current[:-1] + b"," + cached[1:], media_type="application/json",
                    headers={"Cache-Control": "no-store"})
