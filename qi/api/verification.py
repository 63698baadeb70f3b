"""The answer of ``GET /verify/{certificate_id}``, built once for both ways it is served: the
FastAPI route (qi/api/routers/verify.py, which the OpenAPI schema documents) and the lean ASGI path
ahead of FastAPI's stack (qi/api/fastpath.py, docs/decisions/0120). Same bytes from either.

The status comes from the Redis lookups on every request. What does not change per request is
cached in the process (decision 0112): the issuance's event id, signatures, issuer key and proof
for ``QI_API_VERIFY_CACHE_S``; and the JSON of the Redis part itself, per certificate, keyed by the
hashes Redis returned (a changed hash is a miss), so a request re-encodes only its ``status``
(which depends on the clock through expiry) and ``checked_at``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import TypeAdapter

from qi.api.errors import NotFound, Unavailable
from qi.api.models import (Check, InclusionProof, IssuerKeyAtIssue, LogPublicKey, SignatureInfo, Validation,
                           VerificationCached, VerificationNow)
from qi.api.sources.container import ApiSources
from projections.registry import certificate_status

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DATETIME = TypeAdapter(datetime)
_STR = TypeAdapter(str)
#: the fields of VerificationNow written per request; the rest is the cached tail
_PER_REQUEST = {"certificate_id", "status", "checked_at"}


def _ts(us: int | None) -> datetime | None:
    return None if us is None else datetime.fromtimestamp(us / 1e6, UTC)


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


class _Now:
    """What a certificate's Redis hashes turn into, kept while Redis returns the same hashes."""

    __slots__ = ("cert_raw", "val_raw", "issued_at", "lifecycle", "verdict", "valid_until", "tail")

    def __init__(self, lookups, cert_raw: dict[str, str], val_raw: dict[str, str]) -> None:
        self.cert_raw, self.val_raw = cert_raw, val_raw
        cert = lookups.decode("certificates", cert_raw)
        val = lookups.decode("certificate_validations", val_raw)
        self.issued_at, self.lifecycle, self.valid_until = cert.get("issued_at"), cert.get("lifecycle"), \
            cert.get("valid_until")
        self.verdict = val and val.get("verdict")
        validation = signature_check = None
        if val is not None:
            checks = [Check(**c) for c in (val.get("checks") or [])]
            validation = Validation(verdict=val.get("verdict"), validated_at=_ts(val.get("validated_at")),
                                    certificate_version=val.get("certificate_version"),
                                    validator_version=val.get("validator_version"), checks=checks)
            signature_check = next((c for c in checks if c.check == "signature"), None)
        # the per-request fields get placeholders here and are left out of the tail: "twin_id": ... "signature_check": ...
        now = VerificationNow(
            certificate_id="", status="unknown", checked_at=_EPOCH, twin_id=cert.get("twin_id"),
            issuer_id=cert.get("issuer_id"), issued_at=_ts(cert.get("issued_at")), valid_from=_ts(cert.get("valid_from")),
            valid_until=_ts(cert.get("valid_until")), validation=validation, signature_check=signature_check)
        self.tail = now.model_dump_json(exclude=_PER_REQUEST).encode()[1:-1]


class Verifications:
    """Builds verification answers; holds the caches (one per API process, in ``app.state``)."""

    def __init__(self, slow_ttl_s: float, *, size: int = 10_000) -> None:
        self.slow = _Slow(slow_ttl_s, size)
        self._now: dict[str, _Now] = {}
        self._size = size

    async def answer(self, src: ApiSources, certificate_id: str) -> bytes:
        """The Verification document's JSON; NotFound if Redis has no such certificate, Unavailable
        if Redis fails."""
        cert_raw, val_raw = await src.lookups.certificate_hashes(certificate_id)
        if not cert_raw:
            raise NotFound(f"no certificate {certificate_id!r}", field="certificate_id")
        now_part = self._now.get(certificate_id)
        if now_part is None or now_part.cert_raw != cert_raw or now_part.val_raw != val_raw:
            now_part = _Now(src.lookups, cert_raw, val_raw)
            if len(self._now) >= self._size:
                self._now.clear()
            self._now[certificate_id] = now_part
        now = datetime.now(UTC)
        now_us = (now - _EPOCH) // timedelta(microseconds=1)
        status = certificate_status(now_part.lifecycle, now_part.verdict, now_part.valid_until, now_us)
        cached = self.slow.get(certificate_id)
        if cached is None:
            cached = await self._slow(src, certificate_id, now_part.issued_at)
        # one object of the two halves (the Verification schema): the Redis part's fields, then the cached part's
        return b"".join((b'{"certificate_id":', _STR.dump_json(certificate_id), b',"status":"', status.encode(),
                         b'","checked_at":', _DATETIME.dump_json(now), b",", now_part.tail, b",", cached[1:]))

    async def _slow(self, src: ApiSources, certificate_id: str, issued_at_us: int | None) -> bytes:
        slow = await _slow_parts(src, certificate_id, issued_at_us)
        pub = src.audit.public_key
        cached = VerificationCached(
            signatures=[SignatureInfo(**s) for s in slow["signatures"]],
            issuer_key=IssuerKeyAtIssue(**slow["issuer_key"]) if slow["issuer_key"] else None,
            proof=InclusionProof(**slow["proof"]) if slow["proof"] else None,
            proof_unavailable=slow["proof_unavailable"],
            log_public_key=LogPublicKey(**pub) if pub else None,
        ).model_dump_json().encode()
        if slow["proof"] is not None:
            self.slow.put(certificate_id, cached)
        return cached
