"""A deterministic mixed world of events for warehouse tests (no I/O).

Twins with readings, scores and alerts; certificates issued, validated,
revoked, superseded and announced as expiring. Event ids are uuid5 of the
seed and position, so the same call yields the same events.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

from events.models import (
    AdministrativeData,
    AnomalyDetected,
    AnomalyScored,
    CertificateExpiring,
    CertificateIssued,
    CertificateRevoked,
    CertificateSuperseded,
    CertificateValidated,
    CheckOutcome,
    EventMetadata,
    Item,
    Party,
    SensorReading,
    Signature,
    TwinRegistered,
    Validity,
)

T0 = datetime(2026, 10, 1, tzinfo=UTC)
_NS = uuid.UUID("5d1e5b0c-7a53-4c1e-9a7e-3f8f1c2d9b00")


def mixed_events(n: int, *, twins: int = 20, sensors: int = 3, seed: int = 1, start: datetime = T0,
                 step: timedelta = timedelta(seconds=30)) -> list[EventMetadata]:
    """About ``n`` events: ~85% readings+scores (+ alerts on anomalies), the rest twins and certificates."""
    rnd = random.Random(seed)
    counter = iter(range(10**9))

    def eid() -> uuid.UUID:
        return uuid.uuid5(_NS, f"{seed}-{next(counter)}")

    out: list[EventMetadata] = []
    for t in range(twins):
        out.append(TwinRegistered(event_id=eid(), occurred_at=start, source="world", aggregate_version=1,
                                  twin_id=f"tw-{t}", kind="pressure-gauge", name=f"Gauge {t}",
                                  attributes={"site": f"site-{t % 3}"}))
    certs = 0
    i = 0
    while len(out) < n:
        at = start + step * i
        t, s = i % twins, (i // twins) % sensors
        if i % 25 == 7:  # a certificate with its life
            cid = f"cert-{certs}"
            certs += 1
            until = at + timedelta(days=rnd.randint(10, 90))
            out.append(_issued(eid(), cid, f"tw-{t}", at, until))
            out.append(CertificateValidated(event_id=eid(), occurred_at=at + timedelta(seconds=1), source="world",
                                            certificate_id=cid, certificate_version=1,
                                            verdict="VALID" if certs % 5 else "INVALID",
                                            checks=[CheckOutcome(check="signature", outcome="PASS")],
                                            validator_version="1"))
            if certs % 7 == 0:
                out.append(CertificateRevoked(event_id=eid(), occurred_at=at + timedelta(seconds=2), source="world",
                                              aggregate_version=2, certificate_id=cid, revoked_by="lab",
                                              reason="recalled"))
            elif certs % 11 == 0:
                out.append(CertificateSuperseded(event_id=eid(), occurred_at=at + timedelta(seconds=2),
                                                 source="world", aggregate_version=2, certificate_id=cid,
                                                 superseded_by=f"{cid}-b"))
            elif certs % 3 == 0:
                out.append(CertificateExpiring(event_id=eid(), occurred_at=at + timedelta(seconds=3), source="world",
                                               certificate_id=cid, twin_id=f"tw-{t}", valid_until=until,
                                               lead_time_seconds=86400 * 7))
        value = 100.0 + rnd.gauss(0, 1) + (15.0 if rnd.random() < 0.03 else 0.0)
        reading = SensorReading(event_id=eid(), occurred_at=at, source="world", twin_id=f"tw-{t}",
                                sensor_id=f"s{s}", quantity="pressure", value=value, unit="kPa")
        score = abs(value - 100.0) / 1.0
        anomaly = score > 4.0
        out.append(reading)
        out.append(AnomalyScored(event_id=eid(), occurred_at=at, source="world", twin_id=f"tw-{t}",
                                 sensor_id=f"s{s}", reading_event_id=reading.event_id, value=value, score=score,
                                 is_anomaly=anomaly, model_name="zscore", model_version="1"))
        if anomaly:
            out.append(AnomalyDetected(event_id=eid(), occurred_at=at, source="world", twin_id=f"tw-{t}",
                                       sensor_id=f"s{s}", state="RAISED", score=score, threshold=4.0,
                                       reading_event_id=reading.event_id, model_name="zscore", model_version="1"))
        i += 1
    return out


def _issued(event_id: uuid.UUID, cid: str, twin: str, at: datetime, until: datetime) -> CertificateIssued:
    return CertificateIssued(
        event_id=event_id, occurred_at=at, source="world", aggregate_version=1, certificate_id=cid,
        certificate_kind="calibration.pressure",
        administrative=AdministrativeData(issuer_id="lab-1", issuer_name="Lab One", customer=Party(name="ACME"),
                                          item=Item(twin_id=twin), performed_at=at),
        validity=Validity(valid_from=at, valid_until=until),
        signatures=[Signature(key_id="k1", algorithm="Ed25519", value=b"\x00" * 64)],
    )
