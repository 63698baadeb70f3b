"""The projections of QI Stream, as data: tables and pure handlers.

* ``registry`` (Postgres): twins with attributes, status and relationships;
  certificates with lifecycle, latest validation and full history; issuers and
  their keys; validation results.
* ``lookups`` (Redis): a twin's current state, each sensor's latest reading and
  score, a certificate's status for verification by id.

Timestamps are int micros (the ``plain`` decode) in every change; sinks store
them natively. Versions: ``aggregate_version`` for versioned aggregates, the
event time in micros for unversioned facts (validations, readings, scores).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from projections.framework import Change, MapPatch, Projection, Table

TWINS = Table("twins", ("twin_id",), {
    "kind": "text", "name": "text", "manufacturer": "text", "model": "text", "serial_number": "text",
    "owner": "text", "status": "text", "attributes": "jsonb", "registered_at": "timestamptz",
    "updated_at": "timestamptz", "decommission_reason": "text",
}, doc="one row per twin: current attributes (merged), status active|decommissioned")
RELATIONS = Table("twin_relations", ("twin_id", "relation", "target_twin_id"), {
    "active": "bool", "updated_at": "timestamptz",
}, doc="directed relations; active=false once unrelated")
CERTIFICATES = Table("certificates", ("certificate_id",), {
    "twin_id": "text", "certificate_kind": "text", "issuer_id": "text", "issuer_name": "text",
    "issued_at": "timestamptz", "valid_from": "timestamptz", "valid_until": "timestamptz",
    "lifecycle": "text", "revoked_by": "text", "reason": "text", "superseded_by": "text",
    "changed_at": "timestamptz",
}, doc="lifecycle issued|revoked|superseded, versioned by aggregate_version")
LATEST_VALIDATION = Table("certificate_validations", ("certificate_id",), {
    "verdict": "text", "checks": "jsonb", "certificate_version": "bigint", "validator_version": "text",
    "validated_at": "timestamptz", "event_id": "text",
}, doc="the latest validation of each certificate (by event time)")
CERT_HISTORY = Table("certificate_history", ("event_id",), {
    "certificate_id": "text", "event_type": "text", "occurred_at": "timestamptz", "detail": "jsonb",
}, mode="insert", doc="every certificate and validation event")
VALIDATION_RESULTS = Table("validation_results", ("event_id",), {
    "certificate_id": "text", "certificate_version": "bigint", "verdict": "text", "checks": "jsonb",
    "validator_version": "text", "validated_at": "timestamptz",
}, mode="insert", doc="every validation result")
ISSUERS = Table("issuers", ("issuer_id",), {"issuer_name": "text", "updated_at": "timestamptz"})
ISSUER_KEYS = Table("issuer_keys", ("key_id",), {
    "issuer_id": "text", "ed25519_public_key": "text", "ml_dsa_parameter_set": "text",
    "ml_dsa_public_key": "text", "valid_from": "timestamptz", "valid_until": "timestamptz",
    "accreditations": "jsonb", "status": "text", "revoked_at": "timestamptz", "revoked_reason": "text",
})
SENSOR_LATEST = Table("sensor_latest", ("twin_id", "sensor_id"), {
    "value": "double", "quantity": "text", "unit": "text", "occurred_at": "timestamptz", "event_id": "text",
}, doc="latest reading per sensor (by event time)")
SENSOR_SCORE = Table("sensor_score", ("twin_id", "sensor_id"), {
    "score": "double", "is_anomaly": "bool", "value": "double", "model_name": "text",
    "occurred_at": "timestamptz", "event_id": "text",
}, doc="latest anomaly score per sensor (by event time)")


def _twin_registered(r: dict[str, Any]) -> Iterable[Change]:
    yield Change("twins", (r["twin_id"],), r["aggregate_version"], {
        "kind": r["kind"], "name": r["name"], "manufacturer": r.get("manufacturer"), "model": r.get("model"),
        "serial_number": r.get("serial_number"), "owner": r.get("owner"), "status": "active",
        "registered_at": r["occurred_at"], "updated_at": r["occurred_at"],
    }, {"attributes": MapPatch(set=dict(r.get("attributes") or {}))})


def _twin_changed(r: dict[str, Any]) -> Iterable[Change]:
    yield Change("twins", (r["twin_id"],), r["aggregate_version"], {"updated_at": r["occurred_at"]},
                 {"attributes": MapPatch(set=dict(r.get("changed") or {}), remove=tuple(r.get("removed") or ()))})


def _twin_decommissioned(r: dict[str, Any]) -> Iterable[Change]:
    yield Change("twins", (r["twin_id"],), r["aggregate_version"], {
        "status": "decommissioned", "decommission_reason": r.get("reason"), "updated_at": r["occurred_at"]})


def _relation(active: bool):
    def handler(r: dict[str, Any]) -> Iterable[Change]:
        yield Change("twins", (r["twin_id"],), r["aggregate_version"], {"updated_at": r["occurred_at"]})
        # a relation's own version: the twin's aggregate_version at its last change
        yield Change("twin_relations", (r["twin_id"], r["relation"], r["target_twin_id"]), r["aggregate_version"],
                     {"active": active, "updated_at": r["occurred_at"]})
    return handler


def _history(r: dict[str, Any], detail: dict[str, Any]) -> Change:
    return Change("certificate_history", (r["event_id"],), 0, {
        "certificate_id": r["certificate_id"], "event_type": r["event_type"], "occurred_at": r["occurred_at"],
        "detail": detail}, op="insert")


def _cert_issued(r: dict[str, Any]) -> Iterable[Change]:
    adm, val = r["administrative"], r["validity"]
    yield Change("certificates", (r["certificate_id"],), r["aggregate_version"], {
        "twin_id": adm["item"]["twin_id"], "certificate_kind": r["certificate_kind"],
        "issuer_id": adm["issuer_id"], "issuer_name": adm["issuer_name"], "issued_at": r["occurred_at"],
        "valid_from": val["valid_from"], "valid_until": val["valid_until"], "lifecycle": "issued",
        "changed_at": r["occurred_at"]})
    yield _history(r, {"aggregate_version": r["aggregate_version"], "valid_until": val["valid_until"]})


def _cert_revoked(r: dict[str, Any]) -> Iterable[Change]:
    yield Change("certificates", (r["certificate_id"],), r["aggregate_version"], {
        "lifecycle": "revoked", "revoked_by": r["revoked_by"], "reason": r["reason"], "changed_at": r["occurred_at"]})
    yield _history(r, {"aggregate_version": r["aggregate_version"], "reason": r["reason"]})


def _cert_superseded(r: dict[str, Any]) -> Iterable[Change]:
    yield Change("certificates", (r["certificate_id"],), r["aggregate_version"], {
        "lifecycle": "superseded", "superseded_by": r["superseded_by"], "reason": r.get("reason"),
        "changed_at": r["occurred_at"]})
    yield _history(r, {"aggregate_version": r["aggregate_version"], "superseded_by": r["superseded_by"]})


def _checks(r: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"check": c["check"], "outcome": c["outcome"], "detail": c.get("detail")} for c in r["checks"]]


def _validation_latest(r: dict[str, Any]) -> Change:
    return Change("certificate_validations", (r["certificate_id"],), r["occurred_at"], {
        "verdict": r["verdict"], "checks": _checks(r), "certificate_version": r["certificate_version"],
        "validator_version": r["validator_version"], "validated_at": r["occurred_at"], "event_id": r["event_id"]})


def _cert_validated(r: dict[str, Any]) -> Iterable[Change]:
    yield _validation_latest(r)
    yield Change("validation_results", (r["event_id"],), 0, {
        "certificate_id": r["certificate_id"], "certificate_version": r["certificate_version"],
        "verdict": r["verdict"], "checks": _checks(r), "validator_version": r["validator_version"],
        "validated_at": r["occurred_at"]}, op="insert")
    yield _history(r, {"verdict": r["verdict"], "certificate_version": r["certificate_version"]})


def _key_registered(r: dict[str, Any]) -> Iterable[Change]:
    yield Change("issuers", (r["issuer_id"],), r["occurred_at"], {
        "issuer_name": r["issuer_name"], "updated_at": r["occurred_at"]})
    yield Change("issuer_keys", (r["key_id"],), r["aggregate_version"], {
        "issuer_id": r["issuer_id"], "ed25519_public_key": bytes(r["ed25519_public_key"]).hex(),
        "ml_dsa_parameter_set": r["ml_dsa_parameter_set"], "ml_dsa_public_key": bytes(r["ml_dsa_public_key"]).hex(),
        "valid_from": r["valid_from"], "valid_until": r.get("valid_until"),
        "accreditations": list(r.get("accreditations") or []), "status": "active"})


def _key_revoked(r: dict[str, Any]) -> Iterable[Change]:
    yield Change("issuer_keys", (r["key_id"],), r["aggregate_version"], {
        "issuer_id": r["issuer_id"], "status": "revoked", "revoked_at": r["effective_at"],
        "revoked_reason": r["reason"]})


def _reading(r: dict[str, Any]) -> Iterable[Change]:
    yield Change("sensor_latest", (r["twin_id"], r["sensor_id"]), r["occurred_at"], {
        "value": r["value"], "quantity": r["quantity"], "unit": r["unit"], "occurred_at": r["occurred_at"],
        "event_id": r["event_id"]})


def _score(r: dict[str, Any]) -> Iterable[Change]:
    yield Change("sensor_score", (r["twin_id"], r["sensor_id"]), r["occurred_at"], {
        "score": r["score"], "is_anomaly": r["is_anomaly"], "value": r["value"], "model_name": r["model_name"],
        "occurred_at": r["occurred_at"], "event_id": r["event_id"]})


_TWIN_HANDLERS = {
    "TwinRegistered": _twin_registered, "TwinAttributesChanged": _twin_changed,
    "TwinDecommissioned": _twin_decommissioned, "TwinRelated": _relation(True), "TwinUnrelated": _relation(False),
}

#: Postgres view: a certificate's current status (lifecycle wins, then expiry, then the latest verdict).
_STATUS_VIEW = """
CREATE OR REPLACE VIEW certificate_status AS
SELECT c.certificate_id, c.twin_id, c.issuer_id, c.valid_from, c.valid_until, c.lifecycle,
       v.verdict, v.checks, v.validated_at,
       CASE WHEN c.lifecycle IN ('revoked', 'superseded') THEN c.lifecycle
            WHEN c.valid_until < now() THEN 'expired'
            WHEN v.verdict = 'VALID' THEN 'valid'
            WHEN v.verdict = 'INVALID' THEN 'invalid'
            ELSE 'issued' END AS status
FROM certificates c LEFT JOIN certificate_validations v USING (certificate_id)
"""


def certificate_status(lifecycle: str | None, verdict: str | None, valid_until_us: int | None, now_us: int) -> str:
    """The same rule as the Postgres view, for Redis lookups and for tests."""
    if lifecycle in ("revoked", "superseded"):
        return lifecycle
    if lifecycle is None:
        return "unknown"
    if valid_until_us is not None and valid_until_us < now_us:
        return "expired"
    return {"VALID": "valid", "INVALID": "invalid"}.get(verdict or "", "issued")


REGISTRY = Projection(
    name="registry",
    families=("twins", "issuers", "certificates", "validations"),
    tables=(TWINS, RELATIONS, CERTIFICATES, LATEST_VALIDATION, CERT_HISTORY, VALIDATION_RESULTS, ISSUERS,
            ISSUER_KEYS),
    handlers={
        **_TWIN_HANDLERS,
        "CertificateIssued": _cert_issued, "CertificateRevoked": _cert_revoked,
        "CertificateSuperseded": _cert_superseded, "CertificateValidated": _cert_validated,
        "IssuerKeyRegistered": _key_registered, "IssuerKeyRevoked": _key_revoked,
    },
    extra_migrations={"postgres": (
        (2, _STATUS_VIEW),
        (3, "CREATE INDEX IF NOT EXISTS certificates_twin ON certificates (twin_id);"
            "CREATE INDEX IF NOT EXISTS certificate_history_cert ON certificate_history (certificate_id, occurred_at)"),
    )},
)

LOOKUPS = Projection(
    name="lookups",
    families=("twins", "certificates", "validations", "readings", "scores"),
    tables=(TWINS, CERTIFICATES, LATEST_VALIDATION, SENSOR_LATEST, SENSOR_SCORE),
    handlers={
        **{k: v for k, v in _TWIN_HANDLERS.items() if k not in ("TwinRelated", "TwinUnrelated")},
        "TwinRelated": lambda r: [Change("twins", (r["twin_id"],), r["aggregate_version"], {"updated_at": r["occurred_at"]})],
        "TwinUnrelated": lambda r: [Change("twins", (r["twin_id"],), r["aggregate_version"], {"updated_at": r["occurred_at"]})],
        "CertificateIssued": lambda r: [c for c in _cert_issued(r) if c.table == "certificates"],
        "CertificateRevoked": lambda r: [c for c in _cert_revoked(r) if c.table == "certificates"],
        "CertificateSuperseded": lambda r: [c for c in _cert_superseded(r) if c.table == "certificates"],
        "CertificateValidated": lambda r: [_validation_latest(r)],
        "SensorReading": _reading, "AnomalyScored": _score,
    },
)

PROJECTIONS = {p.name: p for p in (REGISTRY, LOOKUPS)}
#: which sink kind each projection writes to by default
DEFAULT_SINK = {"registry": "postgres", "lookups": "redis"}
