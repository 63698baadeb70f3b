"""Response shapes: the OpenAPI contract the dashboard, tests and schemathesis check."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

CertStatus = Literal["valid", "invalid", "revoked", "superseded", "expired", "issued", "unknown"]


class Twin(BaseModel):
    twin_id: str
    kind: str | None = None
    name: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    serial_number: str | None = None
    owner: str | None = None
    status: str | None = Field(None, description="active | decommissioned")
    attributes: dict[str, Any] = Field(default_factory=dict)
    registered_at: datetime | None = None
    updated_at: datetime | None = None
    decommission_reason: str | None = None


class TwinPage(BaseModel):
    items: list[Twin]
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page; null: last page")


class Relation(BaseModel):
    twin_id: str
    relation: str
    target_twin_id: str
    updated_at: datetime | None = None


class CertificateSummary(BaseModel):
    certificate_id: str
    twin_id: str | None = None
    issuer_id: str | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    lifecycle: str | None = None
    verdict: str | None = None
    validated_at: datetime | None = None
    status: CertStatus


class CertificatePage(BaseModel):
    items: list[CertificateSummary]
    next_cursor: str | None = None


class TwinDetail(BaseModel):
    twin: Twin
    relations: list[Relation]
    certificates: list[CertificateSummary]


class HistoryEvent(BaseModel):
    event_id: str
    event_type: str
    occurred_at: datetime
    recorded_at: datetime | None = None
    payload: dict[str, Any] = Field(default_factory=dict)


class TwinHistory(BaseModel):
    twin_id: str
    events: list[HistoryEvent]
    truncated: bool


class Check(BaseModel):
    check: str
    outcome: str = Field(description="PASS | FAIL | SKIPPED")
    detail: str | None = None


class Validation(BaseModel):
    verdict: str | None = None
    validated_at: datetime | None = None
    certificate_version: int | None = None
    validator_version: str | None = None
    checks: list[Check] = Field(default_factory=list)


class CertificateEvent(BaseModel):
    event_id: str
    event_type: str
    occurred_at: datetime
    detail: dict[str, Any] = Field(default_factory=dict)


class CertificateDetail(BaseModel):
    certificate_id: str
    status: CertStatus
    twin_id: str | None = None
    certificate_kind: str | None = None
    issuer_id: str | None = None
    issuer_name: str | None = None
    issued_at: datetime | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    lifecycle: str | None = None
    revoked_by: str | None = None
    reason: str | None = None
    superseded_by: str | None = None
    validation: Validation | None = None
    history: list[CertificateEvent]


class CheckpointSignature(BaseModel):
    name: str
    algorithm: str | None = None
    key_id: str = Field(description="4-byte C2SP key id, base64")
    signature: str = Field(description="the raw signature, base64")


class Checkpoint(BaseModel):
    origin: str
    tree_size: int
    root: str = Field(description="base64 of the 32-byte root")
    text: str = Field(description="the whole C2SP signed note")
    body: str = Field(description="the signed message: origin, size and root lines, each ending in \\n")
    signed_at: datetime
    signatures: list[CheckpointSignature]


class ProofSource(BaseModel):
    topic: str
    partition: int
    offset: int
    event_type: str | None = None


class InclusionProof(BaseModel):
    log_id: str
    event_id: str
    leaf_index: int
    tree_size: int
    leaf_hash: str = Field(description="base64; SHA-256(0x00 || leaf_data)")
    leaf_data: str | None = Field(None, description="base64 of the leaf's input (docs/audit.md section 2)")
    leaf_data_matches: bool | None = Field(None, description="SHA-256(0x00 || leaf_data) == leaf_hash, checked here")
    hashes: list[str] = Field(description="the RFC 9162 inclusion path, base64, leaf to root")
    source: ProofSource
    checkpoint: Checkpoint


class LogPublicKey(BaseModel):
    key_id: str | None = None
    ed25519: str = Field(description="32-byte Ed25519 public key, base64")
    ml_dsa: str = Field(description="ML-DSA-65 public key, base64")


class SignatureInfo(BaseModel):
    key_id: str
    algorithm: str


class IssuerKeyAtIssue(BaseModel):
    key_id: str
    issuer_id: str | None = None
    status: str | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    revoked_at: datetime | None = None
    valid_at_issue: bool | None = Field(None, description="registered, not expired and not revoked at issue time")


class VerificationNow(BaseModel):
    """The part of a verification read on every request (status and checks, from Redis)."""

    certificate_id: str
    status: CertStatus
    checked_at: datetime
    twin_id: str | None = None
    issuer_id: str | None = None
    issued_at: datetime | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    validation: Validation | None = None
    signature_check: Check | None = None


class VerificationCached(BaseModel):
    """The part that changes rarely (cached per certificate, decision 0112)."""

    signatures: list[SignatureInfo] = Field(default_factory=list)
    issuer_key: IssuerKeyAtIssue | None = None
    proof: InclusionProof | None = None
    proof_unavailable: str | None = None
    log_public_key: LogPublicKey | None = None


class Verification(BaseModel):
    certificate_id: str
    status: CertStatus
    checked_at: datetime
    twin_id: str | None = None
    issuer_id: str | None = None
    issued_at: datetime | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    validation: Validation | None = None
    signatures: list[SignatureInfo] = Field(default_factory=list)
    signature_check: Check | None = None
    issuer_key: IssuerKeyAtIssue | None = None
    proof: InclusionProof | None = None
    proof_unavailable: str | None = Field(None, description="why there is no proof yet, if there is none")
    log_public_key: LogPublicKey | None = None


class Reading(BaseModel):
    value: float
    quantity: str | None = None
    unit: str | None = None
    occurred_at: datetime | None = None
    event_id: str | None = None


class Score(BaseModel):
    score: float
    is_anomaly: bool
    value: float | None = None
    model_name: str | None = None
    occurred_at: datetime | None = None
    event_id: str | None = None


class SensorLatest(BaseModel):
    twin_id: str
    sensor_id: str
    reading: Reading | None
    score: Score | None


class Point(BaseModel):
    t: datetime = Field(description="the first reading's time in the bucket")
    value: float = Field(description="mean of the bucket's values (the value itself when n == 1)")
    min: float
    max: float
    n: int
    score: float | None = Field(None, description="highest anomaly score in the bucket; null if not scored yet")
    anomaly: bool = False


class ReadingSeries(BaseModel):
    twin_id: str
    sensor_id: str
    from_: datetime = Field(alias="from")
    to: datetime
    bucket_s: float = Field(description="width of one point's time bucket")
    downsampled: bool = Field(description="true when some point stands for more than one reading")
    points: list[Point]

    model_config = {"populate_by_name": True}


class Alert(BaseModel):
    twin_id: str
    sensor_id: str
    occurred_at: datetime
    state: str = Field(description="RAISED | CLEARED")
    score: float
    threshold: float
    event_id: str


class AlertPage(BaseModel):
    items: list[Alert]
    next_before: datetime | None = Field(None, description="pass as `before` for older alerts")


class RegistryAsOf(BaseModel):
    mode: Literal["as_of", "valid_at"]
    at: datetime
    records_read: int
    events_applied: int
    twins: list[dict[str, Any]]
    certificates: list[dict[str, Any]]
    issuer_keys: list[dict[str, Any]]
    truncated: bool


class EventResult(BaseModel):
    index: int = Field(description="position of the event in the request (0-based)")
    status: Literal["published", "rejected"]
    event_id: str | None = None
    event_type: str | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    field: str | None = None
    reason: str | None = None


class PublishResult(BaseModel):
    published: int
    rejected: int
    results: list[EventResult]


class Health(BaseModel):
    live: bool = True
    ready: bool
    stores: dict[str, bool]
    workers: int = 1
