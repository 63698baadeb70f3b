"""A deterministic mixed world (twins, issuers, certificates, validations, readings, scores) and
the read models it implies, computed here independently of the projection handlers.

``expected(events)`` walks the typed events with the domain rules written out plainly (latest
aggregate_version wins, latest event time wins, history keeps everything) and returns the same
``{table: {key: row}}`` shape as ``Sink.snapshot()``.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from events.models import (
    Accreditation,
    AdministrativeData,
    AnomalyScored,
    CertificateIssued,
    CertificateRevoked,
    CertificateSuperseded,
    CertificateValidated,
    CheckOutcome,
    EventMetadata,
    IssuerKeyRegistered,
    IssuerKeyRevoked,
    Item,
    Party,
    SensorReading,
    Signature,
    TwinAttributesChanged,
    TwinDecommissioned,
    TwinRegistered,
    TwinRelated,
    TwinUnrelated,
    Validity,
)

T0 = datetime(2026, 10, 1, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NS = uuid.UUID("0b7f3c1e-5a1d-4e59-8f0a-6a1f9d2c7e11")


def us(dt: datetime) -> int:
    return (dt - EPOCH) // timedelta(microseconds=1)


def world(n: int, *, seed: int = 1, twins: int = 100, firehose: float = 0.2) -> list[EventMetadata]:
    """About ``n`` events; ``firehose`` of them readings+scores, the rest registry events."""
    rnd = random.Random(seed)
    counter = iter(range(10**9))
    out: list[EventMetadata] = []

    def eid() -> uuid.UUID:
        return uuid.uuid5(_NS, f"{seed}-{next(counter)}")

    def at() -> datetime:
        return T0 + timedelta(milliseconds=len(out) * 10)

    tv: dict[str, int] = {}  # twin -> version
    live_twins: list[str] = []
    for t in range(twins):
        tid = f"tw-{t}"
        tv[tid] = 1
        live_twins.append(tid)
        out.append(TwinRegistered(event_id=eid(), occurred_at=at(), source="w", aggregate_version=1, twin_id=tid,
                                  kind="gauge", name=f"Gauge {t}", owner=f"o{t % 4}",
                                  attributes={"site": f"site-{t % 3}", "line": str(t % 5)}))
    keys: dict[str, tuple[str, int]] = {}
    for i in range(6):
        kid = f"key-{i}"
        keys[kid] = (f"iss-{i % 3}", 1)
        out.append(IssuerKeyRegistered(event_id=eid(), occurred_at=at(), source="w", aggregate_version=1,
                                       issuer_id=f"iss-{i % 3}", issuer_name=f"Issuer {i % 3}", key_id=kid,
                                       ed25519_public_key=bytes([i]) * 32, ml_dsa_parameter_set="ML_DSA_65",
                                       ml_dsa_public_key=bytes([i + 1]) * 16, valid_from=T0,
                                       valid_until=T0 + timedelta(days=365) if i % 2 else None,
                                       accreditations=[Accreditation(body="DAkkS", accreditation_id=f"acc-{i}",
                                                                     scope=["pressure"])]))
    certs: dict[str, int] = {}  # cert -> version; removed once revoked/superseded
    ncert = 0
    while len(out) < n:
        x = rnd.random()
        if x < firehose:
            tid = rnd.choice(list(tv))
            sid = f"s{rnd.randrange(3)}"
            value = 100 + rnd.gauss(0, 3)
            r = SensorReading(event_id=eid(), occurred_at=at(), source="w", twin_id=tid, sensor_id=sid,
                              quantity="pressure", value=value, unit="kPa")
            out.append(r)
            out.append(AnomalyScored(event_id=eid(), occurred_at=at(), source="w", twin_id=tid, sensor_id=sid,
                                     reading_event_id=r.event_id, value=value, score=abs(value - 100) / 3,
                                     is_anomaly=abs(value - 100) > 9, model_name="z", model_version="1"))
            continue
        y = rnd.random()
        if y < 0.25 and live_twins:
            tid = rnd.choice(live_twins)
            tv[tid] += 1
            kind = rnd.random()
            if kind < 0.6:
                out.append(TwinAttributesChanged(
                    event_id=eid(), occurred_at=at(), source="w", aggregate_version=tv[tid], twin_id=tid,
                    changed={f"a{rnd.randrange(6)}": str(rnd.randrange(100))},
                    removed=[f"a{rnd.randrange(6)}"] if rnd.random() < 0.3 else []))
            elif kind < 0.8:
                out.append(TwinRelated(event_id=eid(), occurred_at=at(), source="w", aggregate_version=tv[tid],
                                       twin_id=tid, relation="part_of", target_twin_id=f"tw-{rnd.randrange(twins)}"))
            elif kind < 0.98:
                out.append(TwinUnrelated(event_id=eid(), occurred_at=at(), source="w", aggregate_version=tv[tid],
                                         twin_id=tid, relation="part_of",
                                         target_twin_id=f"tw-{rnd.randrange(twins)}"))
            else:
                out.append(TwinDecommissioned(event_id=eid(), occurred_at=at(), source="w",
                                              aggregate_version=tv[tid], twin_id=tid, reason="retired"))
                live_twins.remove(tid)
        elif y < 0.45 or not certs:
            cid = f"cert-{ncert}"
            ncert += 1
            certs[cid] = 1
            kid = rnd.choice(list(keys))
            when = at()
            out.append(CertificateIssued(
                event_id=eid(), occurred_at=when, source="w", aggregate_version=1, certificate_id=cid,
                certificate_kind="calibration",
                administrative=AdministrativeData(issuer_id=keys[kid][0], issuer_name="Issuer",
                                                  customer=Party(name="ACME"),
                                                  item=Item(twin_id=rnd.choice(list(tv))), performed_at=when),
                validity=Validity(valid_from=when, valid_until=when + timedelta(days=rnd.choice([-1, 30, 400]))),
                signatures=[Signature(key_id=kid, algorithm="Ed25519", value=b"\x01" * 64)]))
        elif y < 0.9:
            cid = rnd.choice(list(certs))
            out.append(CertificateValidated(
                event_id=eid(), occurred_at=at(), source="w", certificate_id=cid, certificate_version=certs[cid],
                verdict=rnd.choice(["VALID", "VALID", "INVALID"]),
                checks=[CheckOutcome(check="signature", outcome=rnd.choice(["PASS", "FAIL"]), detail=None),
                        CheckOutcome(check="issuer_key", outcome="PASS", detail=f"d{len(out)}")],
                validator_version="1"))
        elif y < 0.97:
            cid = rnd.choice(list(certs))
            certs[cid] += 1
            if rnd.random() < 0.5:
                out.append(CertificateRevoked(event_id=eid(), occurred_at=at(), source="w",
                                              aggregate_version=certs[cid], certificate_id=cid, revoked_by="lab",
                                              reason="recalled"))
            else:
                out.append(CertificateSuperseded(event_id=eid(), occurred_at=at(), source="w",
                                                 aggregate_version=certs[cid], certificate_id=cid,
                                                 superseded_by=f"{cid}-next", reason=None))
            del certs[cid]
        else:
            kid = rnd.choice(list(keys))
            issuer, v = keys[kid]
            keys[kid] = (issuer, v + 1)
            out.append(IssuerKeyRevoked(event_id=eid(), occurred_at=at(), source="w", aggregate_version=v + 1,
                                        issuer_id=issuer, key_id=kid, effective_at=at(), reason="rotated"))
    return out


def _checks(e: CertificateValidated) -> list[dict[str, Any]]:
    return [{"check": c.check, "outcome": c.outcome, "detail": c.detail} for c in e.checks]


def expected(events: list[EventMetadata], tables: set[str]) -> dict[str, dict[tuple, dict[str, Any]]]:
    """The read model the events imply (every event applied in log order per aggregate)."""
    twins: dict[tuple, dict] = {}
    rel: dict[tuple, dict] = {}
    certs: dict[tuple, dict] = {}
    latest_val: dict[tuple, dict] = {}
    hist: dict[tuple, dict] = {}
    results: dict[tuple, dict] = {}
    issuers: dict[tuple, dict] = {}
    ikeys: dict[tuple, dict] = {}
    sensor: dict[tuple, dict] = {}
    score: dict[tuple, dict] = {}
    for e in events:
        t = us(e.occurred_at)
        if isinstance(e, TwinRegistered):
            twins[(e.twin_id,)] = {"kind": e.kind, "name": e.name, "manufacturer": e.manufacturer, "model": e.model,
                                   "serial_number": e.serial_number, "owner": e.owner, "status": "active",
                                   "attributes": dict(e.attributes), "registered_at": t, "updated_at": t,
                                   "decommission_reason": None, "_v": e.aggregate_version}
        elif isinstance(e, (TwinAttributesChanged, TwinDecommissioned, TwinRelated, TwinUnrelated)):
            row = twins[(e.twin_id,)]
            row["updated_at"], row["_v"] = t, e.aggregate_version
            if isinstance(e, TwinAttributesChanged):
                row["attributes"].update(e.changed)
                for k in e.removed:
                    row["attributes"].pop(k, None)
            elif isinstance(e, TwinDecommissioned):
                row["status"], row["decommission_reason"] = "decommissioned", e.reason
            else:
                rel[(e.twin_id, e.relation, e.target_twin_id)] = {
                    "active": isinstance(e, TwinRelated), "updated_at": t, "_v": e.aggregate_version}
        elif isinstance(e, CertificateIssued):
            certs[(e.certificate_id,)] = {
                "twin_id": e.administrative.item.twin_id, "certificate_kind": e.certificate_kind,
                "issuer_id": e.administrative.issuer_id, "issuer_name": e.administrative.issuer_name,
                "issued_at": t, "valid_from": us(e.validity.valid_from), "valid_until": us(e.validity.valid_until),
                "lifecycle": "issued", "revoked_by": None, "reason": None, "superseded_by": None, "changed_at": t,
                "_v": e.aggregate_version}
            hist[(str(e.event_id),)] = {"certificate_id": e.certificate_id, "event_type": e.event_type,
                                        "occurred_at": t, "detail": {"aggregate_version": e.aggregate_version,
                                                                     "valid_until": us(e.validity.valid_until)}}
        elif isinstance(e, CertificateRevoked):
            certs[(e.certificate_id,)].update(lifecycle="revoked", revoked_by=e.revoked_by, reason=e.reason,
                                              changed_at=t, _v=e.aggregate_version)
            hist[(str(e.event_id),)] = {"certificate_id": e.certificate_id, "event_type": e.event_type,
                                        "occurred_at": t, "detail": {"aggregate_version": e.aggregate_version,
                                                                     "reason": e.reason}}
        elif isinstance(e, CertificateSuperseded):
            certs[(e.certificate_id,)].update(lifecycle="superseded", superseded_by=e.superseded_by, reason=e.reason,
                                              changed_at=t, _v=e.aggregate_version)
            hist[(str(e.event_id),)] = {"certificate_id": e.certificate_id, "event_type": e.event_type,
                                        "occurred_at": t, "detail": {"aggregate_version": e.aggregate_version,
                                                                     "superseded_by": e.superseded_by}}
        elif isinstance(e, CertificateValidated):
            k = (e.certificate_id,)
            if k not in latest_val or latest_val[k]["_v"] < t:
                latest_val[k] = {"verdict": e.verdict, "checks": _checks(e), "certificate_version": e.certificate_version,
                                 "validator_version": e.validator_version, "validated_at": t,
                                 "event_id": str(e.event_id), "_v": t}
            results[(str(e.event_id),)] = {"certificate_id": e.certificate_id,
                                           "certificate_version": e.certificate_version, "verdict": e.verdict,
                                           "checks": _checks(e), "validator_version": e.validator_version,
                                           "validated_at": t}
            hist[(str(e.event_id),)] = {"certificate_id": e.certificate_id, "event_type": e.event_type,
                                        "occurred_at": t, "detail": {"verdict": e.verdict,
                                                                     "certificate_version": e.certificate_version}}
        elif isinstance(e, IssuerKeyRegistered):
            if (e.issuer_id,) not in issuers or issuers[(e.issuer_id,)]["_v"] < t:
                issuers[(e.issuer_id,)] = {"issuer_name": e.issuer_name, "updated_at": t, "_v": t}
            ikeys[(e.key_id,)] = {"issuer_id": e.issuer_id, "ed25519_public_key": e.ed25519_public_key.hex(),
                                  "ml_dsa_parameter_set": e.ml_dsa_parameter_set,
                                  "ml_dsa_public_key": e.ml_dsa_public_key.hex(), "valid_from": us(e.valid_from),
                                  "valid_until": us(e.valid_until) if e.valid_until else None,
                                  "accreditations": [a.model_dump() for a in e.accreditations], "status": "active", "revoked_at": None,
                                  "revoked_reason": None, "_v": e.aggregate_version}
        elif isinstance(e, IssuerKeyRevoked):
            ikeys[(e.key_id,)].update(status="revoked", revoked_at=us(e.effective_at), revoked_reason=e.reason,
                                      _v=e.aggregate_version)
        elif isinstance(e, SensorReading):
            k = (e.twin_id, e.sensor_id)
            if k not in sensor or sensor[k]["_v"] < t:
                sensor[k] = {"value": e.value, "quantity": e.quantity, "unit": e.unit, "occurred_at": t,
                             "event_id": str(e.event_id), "_v": t}
        elif isinstance(e, AnomalyScored):
            k = (e.twin_id, e.sensor_id)
            if k not in score or score[k]["_v"] < t:
                score[k] = {"score": e.score, "is_anomaly": e.is_anomaly, "value": e.value, "model_name": e.model_name,
                            "occurred_at": t, "event_id": str(e.event_id), "_v": t}
    everything = {"twins": twins, "twin_relations": rel, "certificates": certs,
                  "certificate_validations": latest_val, "certificate_history": hist,
                  "validation_results": results, "issuers": issuers, "issuer_keys": ikeys,
                  "sensor_latest": sensor, "sensor_score": score}
    return {name: everything[name] for name in tables}
