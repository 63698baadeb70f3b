"""Builders for validation tests: issuers with real hybrid keys, twins, signed certificates."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from events.canonical import certificate_payload
from events.models import (
    Accreditation,
    AdministrativeData,
    CertificateIssued,
    CertificateRevoked,
    CertificateSuperseded,
    IssuerKeyRegistered,
    IssuerKeyRevoked,
    Item,
    MeasurementResult,
    Party,
    TwinDecommissioned,
    TwinRegistered,
    Validity,
)
from events.signing import HybridKeyPair

T0 = datetime(2026, 6, 1, tzinfo=UTC)
_KEYS: dict[str, HybridKeyPair] = {}


def key(key_id: str) -> HybridKeyPair:
    """One key pair per key id for the whole test session (ML-DSA keygen is not free)."""
    if key_id not in _KEYS:
        _KEYS[key_id] = HybridKeyPair.generate(key_id)
    return _KEYS[key_id]


def uid(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:8]}"


def register(issuer_id: str, key_id: str, scope: list[str], *, version: int = 1,
             valid_from: datetime = T0 - timedelta(days=365)) -> IssuerKeyRegistered:
    k = key(key_id)
    return IssuerKeyRegistered(
        occurred_at=valid_from, source="test", aggregate_version=version, issuer_id=issuer_id,
        issuer_name=f"{issuer_id} GmbH", key_id=key_id, ed25519_public_key=k.public.ed25519,
        ml_dsa_parameter_set="ML_DSA_65", ml_dsa_public_key=k.public.ml_dsa_65, valid_from=valid_from,
        accreditations=[Accreditation(body="DAkkS", accreditation_id="D-K-1", scope=scope)],
    )


def revoke_key(issuer_id: str, key_id: str, effective_at: datetime, *, version: int = 2) -> IssuerKeyRevoked:
    return IssuerKeyRevoked(occurred_at=effective_at, source="test", aggregate_version=version, issuer_id=issuer_id,
                            key_id=key_id, effective_at=effective_at, reason="compromised")


def twin(twin_id: str) -> TwinRegistered:
    return TwinRegistered(occurred_at=T0 - timedelta(days=30), source="test", aggregate_version=1, twin_id=twin_id,
                          kind="pressure-gauge", name=f"gauge {twin_id}")


def decommission(twin_id: str, at: datetime = T0 - timedelta(days=1)) -> TwinDecommissioned:
    return TwinDecommissioned(occurred_at=at, source="test", aggregate_version=2, twin_id=twin_id, reason="scrapped")


def certificate(cert_id: str, issuer_id: str, key_id: str, twin_id: str, *, kind: str = "calibration.pressure",
                issued_at: datetime = T0, valid_days: float = 365, sign_with: str | None = None,
                result: dict[str, Any] | None = None, valid_from: datetime | None = None,
                valid_until: datetime | None = None) -> CertificateIssued:
    performed = issued_at - timedelta(hours=4)
    vf = valid_from or performed
    cert = CertificateIssued(
        occurred_at=issued_at, source="test", aggregate_version=1, certificate_id=cert_id, certificate_kind=kind,
        administrative=AdministrativeData(
            issuer_id=issuer_id, issuer_name=f"{issuer_id} GmbH", customer=Party(name="Acme"),
            item=Item(twin_id=twin_id), performed_at=performed),
        validity=Validity(valid_from=vf, valid_until=valid_until or vf + timedelta(days=valid_days)),
        results=[MeasurementResult(**{"quantity": "pressure", "value": 101.3, "unit": "kPa",
                                      "expanded_uncertainty": 0.4, "coverage_factor": 2.0, **(result or {})})],
        signatures=[],
    )
    return sign(cert, sign_with or key_id)


def sign(cert: CertificateIssued, key_id: str) -> CertificateIssued:
    return cert.model_copy(update={"signatures": key(key_id).sign(certificate_payload(cert))})


def revoke_cert(cert_id: str, *, version: int = 2) -> CertificateRevoked:
    return CertificateRevoked(occurred_at=T0 + timedelta(days=1), source="test", aggregate_version=version,
                              certificate_id=cert_id, revoked_by="test", reason="drift")


def supersede(cert_id: str, by: str, *, version: int = 2) -> CertificateSuperseded:
    return CertificateSuperseded(occurred_at=T0 + timedelta(days=2), source="test", aggregate_version=version,
                                 certificate_id=cert_id, superseded_by=by, reason="recalibrated")
