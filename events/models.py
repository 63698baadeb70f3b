"""Event types, GENERATED from schemas/*.avsc by `qi schemas codegen`.

Do not edit by hand: change the .avsc file (a new version for any change to
an existing event) and regenerate. tests/events/test_codegen.py fails when
this file and the schemas disagree.
"""

# ruff: noqa: E501
from __future__ import annotations

from typing import ClassVar, Literal
from uuid import UUID

from pydantic import AwareDatetime, Field

from events.base import Event, Finite, Id, Record, new_event_id, utc_now


AlertState = Literal['RAISED', 'CLEARED']


class Accreditation(Record):
    body: str
    accreditation_id: Id
    scope: list[str] = Field(default_factory=list)


class Party(Record):
    name: str
    customer_id: Id | None = None
    address: str | None = None


class Item(Record):
    """The calibrated item: a twin."""

    twin_id: Id
    description: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    serial_number: str | None = None


class AdministrativeData(Record):
    """DCC administrative data."""

    issuer_id: Id
    issuer_name: str
    accreditation: Accreditation | None = None
    customer: Party
    item: Item
    performed_at: AwareDatetime
    location: str | None = None


class Validity(Record):
    valid_from: AwareDatetime
    valid_until: AwareDatetime


class MeasurementResult(Record):
    """One DCC measurement result."""

    quantity: str
    value: Finite
    unit: str
    expanded_uncertainty: Finite
    coverage_factor: Finite
    coverage_probability: Finite = 0.95
    reference_value: Finite | None = None
    conditions: dict[str, str] = Field(default_factory=dict)


SignatureAlgorithm = Literal['Ed25519', 'ML_DSA_44', 'ML_DSA_65', 'ML_DSA_87']


class Signature(Record):
    """One signature of a hybrid signature set; every listed signature must verify."""

    key_id: Id
    algorithm: SignatureAlgorithm
    value: bytes


Verdict = Literal['VALID', 'INVALID']


Outcome = Literal['PASS', 'FAIL', 'SKIPPED']


class CheckOutcome(Record):
    check: str
    outcome: Outcome
    detail: str | None = None


ErrorKind = Literal['NOT_FRAMED', 'UNKNOWN_SCHEMA', 'BAD_PAYLOAD', 'VALIDATION_FAILED', 'BAD_SIGNATURE', 'PROCESSING_ERROR']


MlDsaParameterSet = Literal['ML_DSA_44', 'ML_DSA_65', 'ML_DSA_87']


class EventMetadata(Event):
    """Metadata every event carries (the first fields of every schema)."""

    event_id: UUID = Field(default_factory=new_event_id)
    event_type: str
    occurred_at: AwareDatetime
    recorded_at: AwareDatetime = Field(default_factory=utc_now)
    source: str
    correlation_id: Id | None = None
    causation_id: Id | None = None


class VersionedEvent(EventMetadata):
    """An event of an aggregate with optimistic concurrency (twins, issuers, certificates)."""

    aggregate_version: int = Field(ge=1)


class AnomalyDetected(EventMetadata):
    """An anomaly alert was raised or cleared."""

    AVRO_NAME: ClassVar[str] = "AnomalyDetected"
    SCHEMA_VERSION: ClassVar[int] = 1
    TOPIC_FAMILY: ClassVar[str] = "alerts"
    KEY_FIELDS: ClassVar[tuple[str, ...]] = ('twin_id', 'sensor_id')
    event_type: Literal["AnomalyDetected"] = "AnomalyDetected"
    twin_id: Id
    sensor_id: Id
    state: AlertState
    score: Finite
    threshold: Finite
    reading_event_id: UUID
    model_name: str
    model_version: str


class AnomalyScored(EventMetadata):
    """An anomaly score for one reading."""

    AVRO_NAME: ClassVar[str] = "AnomalyScored"
    SCHEMA_VERSION: ClassVar[int] = 1
    TOPIC_FAMILY: ClassVar[str] = "scores"
    KEY_FIELDS: ClassVar[tuple[str, ...]] = ('twin_id', 'sensor_id')
    event_type: Literal["AnomalyScored"] = "AnomalyScored"
    twin_id: Id
    sensor_id: Id
    reading_event_id: UUID
    value: Finite
    score: Finite
    is_anomaly: bool
    model_name: str
    model_version: str


class AuditEntryAppended(EventMetadata):
    """A domain event became a leaf of the append-only audit log."""

    AVRO_NAME: ClassVar[str] = "AuditEntryAppended"
    SCHEMA_VERSION: ClassVar[int] = 1
    TOPIC_FAMILY: ClassVar[str] = "audit"
    KEY_FIELDS: ClassVar[tuple[str, ...]] = ('log_id',)
    event_type: Literal["AuditEntryAppended"] = "AuditEntryAppended"
    log_id: Id
    leaf_index: int
    leaf_hash: bytes
    source_topic: str
    source_partition: int
    source_offset: int
    source_event_id: UUID | None = None
    source_event_type: str | None = None


class CertificateExpiring(EventMetadata):
    """A certificate's validity ends soon."""

    AVRO_NAME: ClassVar[str] = "CertificateExpiring"
    SCHEMA_VERSION: ClassVar[int] = 1
    TOPIC_FAMILY: ClassVar[str] = "alerts"
    KEY_FIELDS: ClassVar[tuple[str, ...]] = ('certificate_id',)
    event_type: Literal["CertificateExpiring"] = "CertificateExpiring"
    certificate_id: Id
    twin_id: Id
    valid_until: AwareDatetime
    lead_time_seconds: int


class CertificateIssued(VersionedEvent):
    """A calibration or conformity certificate was issued to a twin (PTB Digital Calibration Certificate shape)."""

    AVRO_NAME: ClassVar[str] = "CertificateIssued"
    SCHEMA_VERSION: ClassVar[int] = 1
    TOPIC_FAMILY: ClassVar[str] = "certificates"
    KEY_FIELDS: ClassVar[tuple[str, ...]] = ('certificate_id',)
    event_type: Literal["CertificateIssued"] = "CertificateIssued"
    certificate_id: Id
    certificate_kind: str
    administrative: AdministrativeData
    validity: Validity
    results: list[MeasurementResult] = Field(default_factory=list)
    signatures: list[Signature]


class CertificateRevoked(VersionedEvent):
    """A certificate was revoked."""

    AVRO_NAME: ClassVar[str] = "CertificateRevoked"
    SCHEMA_VERSION: ClassVar[int] = 1
    TOPIC_FAMILY: ClassVar[str] = "certificates"
    KEY_FIELDS: ClassVar[tuple[str, ...]] = ('certificate_id',)
    event_type: Literal["CertificateRevoked"] = "CertificateRevoked"
    certificate_id: Id
    revoked_by: str
    reason: str


class CertificateSuperseded(VersionedEvent):
    """A certificate was replaced by a newer one."""

    AVRO_NAME: ClassVar[str] = "CertificateSuperseded"
    SCHEMA_VERSION: ClassVar[int] = 1
    TOPIC_FAMILY: ClassVar[str] = "certificates"
    KEY_FIELDS: ClassVar[tuple[str, ...]] = ('certificate_id',)
    event_type: Literal["CertificateSuperseded"] = "CertificateSuperseded"
    certificate_id: Id
    superseded_by: str
    reason: str | None = None


class CertificateValidated(EventMetadata):
    """The verdict of certificate validation."""

    AVRO_NAME: ClassVar[str] = "CertificateValidated"
    SCHEMA_VERSION: ClassVar[int] = 1
    TOPIC_FAMILY: ClassVar[str] = "validations"
    KEY_FIELDS: ClassVar[tuple[str, ...]] = ('certificate_id',)
    event_type: Literal["CertificateValidated"] = "CertificateValidated"
    certificate_id: Id
    certificate_version: int
    verdict: Verdict
    checks: list[CheckOutcome]
    validator_version: str


class DeadLetter(EventMetadata):
    """A record that could not be processed, with the reason. Nothing is dropped silently."""

    AVRO_NAME: ClassVar[str] = "DeadLetter"
    SCHEMA_VERSION: ClassVar[int] = 1
    TOPIC_FAMILY: ClassVar[str] = "deadletter"
    KEY_FIELDS: ClassVar[tuple[str, ...]] = ('source_key',)
    event_type: Literal["DeadLetter"] = "DeadLetter"
    source_topic: str
    source_partition: int
    source_offset: int
    source_key: bytes | None = None
    original: bytes
    error_kind: ErrorKind
    error_message: str
    worker: str


class IssuerKeyRegistered(VersionedEvent):
    """An issuer registers a hybrid (Ed25519 + ML-DSA) signing key in the trust registry."""

    AVRO_NAME: ClassVar[str] = "IssuerKeyRegistered"
    SCHEMA_VERSION: ClassVar[int] = 1
    TOPIC_FAMILY: ClassVar[str] = "issuers"
    KEY_FIELDS: ClassVar[tuple[str, ...]] = ('issuer_id',)
    event_type: Literal["IssuerKeyRegistered"] = "IssuerKeyRegistered"
    issuer_id: Id
    issuer_name: str
    key_id: Id
    ed25519_public_key: bytes
    ml_dsa_parameter_set: MlDsaParameterSet
    ml_dsa_public_key: bytes
    valid_from: AwareDatetime
    valid_until: AwareDatetime | None = None
    accreditations: list[Accreditation] = Field(default_factory=list)


class IssuerKeyRevoked(VersionedEvent):
    """An issuer key is revoked."""

    AVRO_NAME: ClassVar[str] = "IssuerKeyRevoked"
    SCHEMA_VERSION: ClassVar[int] = 1
    TOPIC_FAMILY: ClassVar[str] = "issuers"
    KEY_FIELDS: ClassVar[tuple[str, ...]] = ('issuer_id',)
    event_type: Literal["IssuerKeyRevoked"] = "IssuerKeyRevoked"
    issuer_id: Id
    key_id: Id
    effective_at: AwareDatetime
    reason: str


class SensorReading(EventMetadata):
    """One reading of one sensor on a twin; occurred_at is the measurement time."""

    AVRO_NAME: ClassVar[str] = "SensorReading"
    SCHEMA_VERSION: ClassVar[int] = 1
    TOPIC_FAMILY: ClassVar[str] = "readings"
    KEY_FIELDS: ClassVar[tuple[str, ...]] = ('twin_id', 'sensor_id')
    event_type: Literal["SensorReading"] = "SensorReading"
    twin_id: Id
    sensor_id: Id
    quantity: str
    value: Finite
    unit: str


class TreeHeadSigned(EventMetadata):
    """A signed tree head of the audit log."""

    AVRO_NAME: ClassVar[str] = "TreeHeadSigned"
    SCHEMA_VERSION: ClassVar[int] = 1
    TOPIC_FAMILY: ClassVar[str] = "audit"
    KEY_FIELDS: ClassVar[tuple[str, ...]] = ('log_id',)
    event_type: Literal["TreeHeadSigned"] = "TreeHeadSigned"
    log_id: Id
    tree_size: int
    root_hash: bytes
    signatures: list[Signature]


class TwinAttributesChanged(VersionedEvent):
    """Some of a twin's attributes changed."""

    AVRO_NAME: ClassVar[str] = "TwinAttributesChanged"
    SCHEMA_VERSION: ClassVar[int] = 1
    TOPIC_FAMILY: ClassVar[str] = "twins"
    KEY_FIELDS: ClassVar[tuple[str, ...]] = ('twin_id',)
    event_type: Literal["TwinAttributesChanged"] = "TwinAttributesChanged"
    twin_id: Id
    changed: dict[str, str] = Field(default_factory=dict)
    removed: list[str] = Field(default_factory=list)


class TwinDecommissioned(VersionedEvent):
    """The asset was taken out of service; no new certificates may name it."""

    AVRO_NAME: ClassVar[str] = "TwinDecommissioned"
    SCHEMA_VERSION: ClassVar[int] = 1
    TOPIC_FAMILY: ClassVar[str] = "twins"
    KEY_FIELDS: ClassVar[tuple[str, ...]] = ('twin_id',)
    event_type: Literal["TwinDecommissioned"] = "TwinDecommissioned"
    twin_id: Id
    reason: str | None = None


class TwinRegistered(VersionedEvent):
    """A new asset twin enters the registry. aggregate_version is 1."""

    AVRO_NAME: ClassVar[str] = "TwinRegistered"
    SCHEMA_VERSION: ClassVar[int] = 1
    TOPIC_FAMILY: ClassVar[str] = "twins"
    KEY_FIELDS: ClassVar[tuple[str, ...]] = ('twin_id',)
    event_type: Literal["TwinRegistered"] = "TwinRegistered"
    twin_id: Id
    kind: str
    name: str
    manufacturer: str | None = None
    model: str | None = None
    serial_number: str | None = None
    owner: str | None = None
    attributes: dict[str, str] = Field(default_factory=dict)


class TwinRelated(VersionedEvent):
    """A directed relation from this twin to another was added."""

    AVRO_NAME: ClassVar[str] = "TwinRelated"
    SCHEMA_VERSION: ClassVar[int] = 1
    TOPIC_FAMILY: ClassVar[str] = "twins"
    KEY_FIELDS: ClassVar[tuple[str, ...]] = ('twin_id',)
    event_type: Literal["TwinRelated"] = "TwinRelated"
    twin_id: Id
    relation: str
    target_twin_id: Id


class TwinUnrelated(VersionedEvent):
    """A relation was removed."""

    AVRO_NAME: ClassVar[str] = "TwinUnrelated"
    SCHEMA_VERSION: ClassVar[int] = 1
    TOPIC_FAMILY: ClassVar[str] = "twins"
    KEY_FIELDS: ClassVar[tuple[str, ...]] = ('twin_id',)
    event_type: Literal["TwinUnrelated"] = "TwinUnrelated"
    twin_id: Id
    relation: str
    target_twin_id: Id


#: Every event type by name (the Avro record name, also ``event_type``).

EVENT_TYPES: dict[str, type[EventMetadata]] = {
    'AnomalyDetected': AnomalyDetected,
    'AnomalyScored': AnomalyScored,
    'AuditEntryAppended': AuditEntryAppended,
    'CertificateExpiring': CertificateExpiring,
    'CertificateIssued': CertificateIssued,
    'CertificateRevoked': CertificateRevoked,
    'CertificateSuperseded': CertificateSuperseded,
    'CertificateValidated': CertificateValidated,
    'DeadLetter': DeadLetter,
    'IssuerKeyRegistered': IssuerKeyRegistered,
    'IssuerKeyRevoked': IssuerKeyRevoked,
    'SensorReading': SensorReading,
    'TreeHeadSigned': TreeHeadSigned,
    'TwinAttributesChanged': TwinAttributesChanged,
    'TwinDecommissioned': TwinDecommissioned,
    'TwinRegistered': TwinRegistered,
    'TwinRelated': TwinRelated,
    'TwinUnrelated': TwinUnrelated,
}

AnyEvent = AnomalyDetected | AnomalyScored | AuditEntryAppended | CertificateExpiring | CertificateIssued | CertificateRevoked | CertificateSuperseded | CertificateValidated | DeadLetter | IssuerKeyRegistered | IssuerKeyRevoked | SensorReading | TreeHeadSigned | TwinAttributesChanged | TwinDecommissioned | TwinRegistered | TwinRelated | TwinUnrelated
