"""The checks of certificate validation, as pure functions.

Every check of a certificate issuance is reported, in this order, with PASS,
FAIL or SKIPPED and a detail, never only the first failure:

``issuer_key``      the signatures name one key the issuer registered, valid and not revoked at issue time
``signature``       both signatures (Ed25519 and ML-DSA-65) verify over the RFC 8785 payload
``accreditation``   the key's accreditation scope covers the certificate's kind
``twin``            the twin exists and was not decommissioned before the issue time
``validity_window`` valid_from < valid_until, not longer than the policy allows, performed before issued
``results``         at least one result; unit present, finite values, uncertainty >= 0, coverage factor > 0
``lifecycle``       no duplicate certificate id

Revocations and supersessions get one check, ``lifecycle``: no revoking an
unknown or revoked certificate, no superseding a revoked/superseded one or
with an unknown, invalid or older certificate.

A check whose fact is not known yet (issuer, key, twin, superseding
certificate) is SKIPPED and named in :attr:`Evaluation.missing`: the caller
holds the event as pending and evaluates it again when the fact arrives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from events.canonical import CanonicalError, certificate_payload
from events.models import CertificateIssued, CertificateRevoked, CertificateSuperseded, CheckOutcome
from events.signing import verify_hybrid
from streams.validation.facts import CertIndexEntry, CertState, Issuer, Twin

ISSUED_CHECKS = ("issuer_key", "signature", "accreditation", "twin", "validity_window", "results", "lifecycle")


@dataclass(frozen=True)
class Policy:
    max_validity: timedelta = timedelta(days=3650)
    clock_skew: timedelta = timedelta(minutes=5)


@dataclass
class Evaluation:
    checks: list[CheckOutcome]
    missing: list[str] = field(default_factory=list)
    bad_signature: bool = False

    @property
    def pending(self) -> bool:
        return bool(self.missing)

    @property
    def valid(self) -> bool:
        return all(c.outcome == "PASS" for c in self.checks)

    @property
    def verdict(self) -> str:
        return "VALID" if self.valid else "INVALID"

    def failed(self) -> list[str]:
        return [c.check for c in self.checks if c.outcome != "PASS"]


# Built without pydantic validation: check names, outcomes and str details are ours (hot path).
def _ok(check: str, detail: str) -> CheckOutcome:
    return CheckOutcome.model_construct(check=check, outcome="PASS", detail=detail)


def _fail(check: str, detail: str) -> CheckOutcome:
    return CheckOutcome.model_construct(check=check, outcome="FAIL", detail=detail)


def _skip(check: str, detail: str) -> CheckOutcome:
    return CheckOutcome.model_construct(check=check, outcome="SKIPPED", detail=detail)


def _finite(x: float | None) -> bool:
    return x is None or math.isfinite(x)


def has_non_finite(cert: CertificateIssued) -> bool:
    """Whether any number of the results is NaN or infinite (poison as well as a failed check)."""
    return any(not _finite(getattr(r, n)) for r in cert.results
               for n in ("value", "expanded_uncertainty", "coverage_factor", "coverage_probability", "reference_value"))


def check_results(cert: CertificateIssued) -> CheckOutcome:
    if not cert.results:
        return _fail("results", "no measurement results")
    problems = []
    for i, r in enumerate(cert.results):
        where = f"results[{i}]"
        if not r.unit.strip():
            problems.append(f"{where}.unit is empty")
        if not r.quantity.strip():
            problems.append(f"{where}.quantity is empty")
        for name in ("value", "expanded_uncertainty", "coverage_factor", "coverage_probability", "reference_value"):
            if not _finite(getattr(r, name)):
                problems.append(f"{where}.{name} is not finite")
        if math.isfinite(r.expanded_uncertainty) and r.expanded_uncertainty < 0:
            problems.append(f"{where}.expanded_uncertainty < 0")
        if math.isfinite(r.coverage_factor) and r.coverage_factor <= 0:
            problems.append(f"{where}.coverage_factor <= 0")
        if math.isfinite(r.coverage_probability) and not 0 < r.coverage_probability <= 1:
            problems.append(f"{where}.coverage_probability outside (0, 1]")
    if problems:
        return _fail("results", "; ".join(problems))
    return _ok("results", f"{len(cert.results)} well-formed result(s)")


def check_validity_window(cert: CertificateIssued, policy: Policy) -> CheckOutcome:
    v, problems = cert.validity, []
    if v.valid_from >= v.valid_until:
        problems.append("valid_from is not before valid_until")
    elif v.valid_until - v.valid_from > policy.max_validity:
        problems.append(f"validity longer than {policy.max_validity.days} days")
    performed = cert.administrative.performed_at
    if performed > cert.occurred_at + policy.clock_skew:
        problems.append("performed_at is after the certificate was issued")
    if v.valid_from < performed - policy.clock_skew:
        problems.append("valid_from is before the calibration was performed")
    if problems:
        return _fail("validity_window", "; ".join(problems))
    return _ok("validity_window", f"{v.valid_from.isoformat()} .. {v.valid_until.isoformat()}")


def check_twin(cert: CertificateIssued, twin: Twin | None, missing: list[str]) -> CheckOutcome:
    tid = cert.administrative.item.twin_id
    if twin is None:
        missing.append(f"twin:{tid}")
        return _skip("twin", f"twin {tid!r} not known (yet)")
    if twin.decommissioned_at is not None and twin.decommissioned_at <= cert.occurred_at:
        return _fail("twin", f"twin {tid!r} decommissioned at {twin.decommissioned_at.isoformat()}")
    return _ok("twin", f"twin {tid!r} in service")


def validate_issued(cert: CertificateIssued, *, issuer: Issuer | None, twin: Twin | None,
                    existing: CertState | None, policy: Policy, event_id: str) -> Evaluation:
    missing: list[str] = []
    checks: list[CheckOutcome] = []
    issuer_id = cert.administrative.issuer_id
    key_ids = sorted({s.key_id for s in cert.signatures})
    key = None
    # issuer_key
    if len(key_ids) != 1:
        checks.append(_fail("issuer_key", f"signatures must name exactly one key, they name {key_ids}"))
    elif issuer is None:
        missing.append(f"issuer:{issuer_id}")
        checks.append(_skip("issuer_key", f"issuer {issuer_id!r} not registered (yet)"))
    elif key_ids[0] not in issuer.keys:
        missing.append(f"key:{issuer_id}/{key_ids[0]}")
        checks.append(_skip("issuer_key", f"key {key_ids[0]!r} not registered by {issuer_id!r} (yet)"))
    else:
        key = issuer.keys[key_ids[0]]
        at = cert.occurred_at
        if at < key.valid_from:
            checks.append(_fail("issuer_key", f"key {key.key_id!r} valid only from {key.valid_from.isoformat()}"))
        elif key.valid_until is not None and at >= key.valid_until:
            checks.append(_fail("issuer_key", f"key {key.key_id!r} expired at {key.valid_until.isoformat()}"))
        elif key.revoked_at is not None and at >= key.revoked_at:
            checks.append(_fail("issuer_key", f"key {key.key_id!r} revoked at {key.revoked_at.isoformat()}, "
                                              f"before the issue time {at.isoformat()}"))
        else:
            checks.append(_ok("issuer_key", f"key {key.key_id!r} registered and not revoked at issue time"))
    # signature
    bad_signature = False
    public = key.public() if key is not None else None
    if key is None:
        checks.append(_skip("signature", "no registered key to verify with"))
    elif public is None:
        checks.append(_fail("signature", f"registered key {key.key_id!r} is malformed"))
    else:
        try:
            verdict = verify_hybrid(public, certificate_payload(cert), cert.signatures)
        except CanonicalError as e:
            checks.append(_fail("signature", f"content has no canonical form: {e}"))
            bad_signature = True
        else:
            checks.append((_ok if verdict.ok else _fail)("signature", verdict.detail))
            bad_signature = not verdict.ok
    # accreditation
    if key is None:
        checks.append(_skip("accreditation", "issuer key unknown"))
    elif cert.certificate_kind in key.scope:
        checks.append(_ok("accreditation", f"{cert.certificate_kind!r} in the scope of key {key.key_id!r}"))
    else:
        checks.append(_fail("accreditation", f"{issuer_id!r} is not accredited for {cert.certificate_kind!r} "
                                             f"(scope: {', '.join(key.scope) or 'none'})"))
    checks.append(check_twin(cert, twin, missing))
    checks.append(check_validity_window(cert, policy))
    checks.append(check_results(cert))
    # lifecycle
    if existing is not None and existing.event_id not in (None, event_id):
        checks.append(_fail("lifecycle", f"duplicate certificate id {cert.certificate_id!r} "
                                         f"(first issued by event {existing.event_id})"))
    else:
        checks.append(_ok("lifecycle", "new certificate id"))
    return Evaluation(checks, missing, bad_signature)


def validate_revoked(event: CertificateRevoked, state: CertState | None) -> Evaluation:
    if state is None or state.event_id is None:
        return Evaluation([_fail("lifecycle", f"cannot revoke unknown certificate {event.certificate_id!r}")])
    if state.status == "PENDING":
        return Evaluation([_skip("lifecycle", "certificate still pending")], [f"certificate:{event.certificate_id}"])
    if state.status == "REVOKED":
        return Evaluation([_fail("lifecycle", f"certificate {event.certificate_id!r} is already revoked")])
    if event.aggregate_version <= state.version:
        return Evaluation([_fail("lifecycle", f"aggregate_version {event.aggregate_version} is not after "
                                              f"{state.version}")])
    return Evaluation([_ok("lifecycle", f"{state.status} certificate revoked")])


def validate_superseded(event: CertificateSuperseded, state: CertState | None,
                        successor: CertIndexEntry | None) -> Evaluation:
    cid, new = event.certificate_id, event.superseded_by
    if state is None or state.event_id is None:
        return Evaluation([_fail("lifecycle", f"cannot supersede unknown certificate {cid!r}")])
    if state.status == "PENDING":
        return Evaluation([_skip("lifecycle", "certificate still pending")], [f"certificate:{cid}"])
    if state.status in ("REVOKED", "SUPERSEDED"):
        return Evaluation([_fail("lifecycle", f"certificate {cid!r} is {state.status.lower()}")])
    if event.aggregate_version <= state.version:
        return Evaluation([_fail("lifecycle", f"aggregate_version {event.aggregate_version} is not after "
                                              f"{state.version}")])
    if new == cid:
        return Evaluation([_fail("lifecycle", "a certificate cannot supersede itself")])
    if successor is None or successor.status == "PENDING":
        return Evaluation([_skip("lifecycle", f"superseding certificate {new!r} not validated (yet)")],
                          [f"certificate:{new}"])
    if successor.status != "VALID":
        return Evaluation([_fail("lifecycle", f"superseding certificate {new!r} is {successor.status.lower()}")])
    if state.issued_at is not None and successor.issued_at < state.issued_at:
        return Evaluation([_fail("lifecycle", f"superseding certificate {new!r} is older than {cid!r}")])
    return Evaluation([_ok("lifecycle", f"superseded by {new!r}")])


def expiring_due(state: CertState, now: datetime, lead: timedelta) -> bool:
    """Whether a CertificateExpiring alert is due now (and was not sent yet)."""
    if state.expiring_sent or state.status != "VALID" or state.valid_until is None:
        return False
    now_s = now.timestamp()
    return state.valid_until - lead.total_seconds() <= now_s < state.valid_until


