"""A small, realistic sample of the world: issuers, twins, certificates, readings.

Used by ``qi demo`` and by tests. Issuer keys are generated fresh on every
call (hybrid Ed25519 + ML-DSA-65) and never leave this process; certificates
carry real signatures over :func:`events.canonical.certificate_payload`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from events.canonical import certificate_payload
from events.models import (
    Accreditation,
    AdministrativeData,
    CertificateIssued,
    CertificateSuperseded,
    EventMetadata,
    IssuerKeyRegistered,
    Item,
    MeasurementResult,
    Party,
    SensorReading,
    TwinAttributesChanged,
    TwinRegistered,
    TwinRelated,
    Validity,
)
from events.signing import HybridKeyPair

@dataclass
class _IssuerKey:
    issuer_id: str
    issuer_name: str
    keys: HybridKeyPair
    accreditation: Accreditation


def sample_events(*, now: datetime | None = None, readings_per_sensor: int = 25, seed: int = 7) -> list[EventMetadata]:
    """About 130 events of every domain family, in a causally sensible order."""
    now = now or datetime.now(UTC)
    rnd = random.Random(seed)
    src = "qi-demo"
    t0 = now - timedelta(days=30)
    out: list[EventMetadata] = []

    issuers = [
        _IssuerKey("lab-berlin", "Kalibrierlabor Berlin GmbH", HybridKeyPair.generate("lab-berlin/2026-1"),
                   Accreditation(body="DAkkS", accreditation_id="D-K-15001-01-00", scope=["calibration.pressure", "calibration.temperature"])),
        _IssuerKey("lab-zurich", "Metrologie Zürich AG", HybridKeyPair.generate("lab-zurich/2026-1"),
                   Accreditation(body="SAS", accreditation_id="SCS 0042", scope=["calibration.mass", "calibration.humidity"])),
    ]
    for k in issuers:
        out.append(IssuerKeyRegistered(
            occurred_at=t0, source=src, aggregate_version=1, issuer_id=k.issuer_id, issuer_name=k.issuer_name,
            key_id=k.keys.key_id, ed25519_public_key=k.keys.public.ed25519,
            ml_dsa_parameter_set="ML_DSA_65", ml_dsa_public_key=k.keys.public.ml_dsa_65,
            valid_from=t0 - timedelta(days=1), accreditations=[k.accreditation],
        ))

    twins = [
        ("gauge-0001", "pressure-gauge", "Process pressure gauge PG-1", "WIKA", "CPG1500", "pressure", "kPa", 101.3, 0.4),
        ("thermo-0002", "thermometer", "Reference thermometer RT-2", "Fluke", "1524", "temperature", "degC", 21.0, 0.15),
        ("mass-0003", "mass-standard", "Mass standard 1 kg", "Sartorius", "E2-1kg", "mass", "g", 1000.0, 0.0005),
        ("hygro-0004", "hygrometer", "Climate hygrometer H-4", "Rotronic", "HC2A", "humidity", "%RH", 45.0, 1.2),
    ]
    for tid, kind, name, manu, model, *_ in twins:
        out.append(TwinRegistered(
            occurred_at=t0 + timedelta(hours=1), source=src, aggregate_version=1, twin_id=tid, kind=kind, name=name,
            manufacturer=manu, model=model, serial_number=f"SN-{tid.upper()}", owner="Acme Process Plant",
            attributes={"site": "Plant 1", "building": "B2"},
        ))
    out.append(TwinRelated(occurred_at=t0 + timedelta(hours=2), source=src, aggregate_version=2,
                           twin_id="thermo-0002", relation="calibrated_with", target_twin_id="mass-0003"))
    out.append(TwinAttributesChanged(occurred_at=t0 + timedelta(days=3), source=src, aggregate_version=2,
                                     twin_id="gauge-0001", changed={"building": "B3", "line": "L7"}))

    cert_specs = [
        ("DCC-2026-0001", issuers[0], "calibration.pressure", twins[0]),
        ("DCC-2026-0002", issuers[0], "calibration.temperature", twins[1]),
        ("DCC-2026-0003", issuers[1], "calibration.mass", twins[2]),
        ("DCC-2026-0004", issuers[0], "calibration.pressure", twins[0]),
    ]
    for i, (cid, issuer, kind, twin) in enumerate(cert_specs):
        tid, _, name, manu, model, quantity, unit, nominal, u = twin
        performed = t0 + timedelta(days=5 + 5 * i)
        cert = CertificateIssued(
            occurred_at=performed + timedelta(hours=4), source=src, aggregate_version=1,
            certificate_id=cid, certificate_kind=kind,
            administrative=AdministrativeData(
                issuer_id=issuer.issuer_id, issuer_name=issuer.issuer_name, accreditation=issuer.accreditation,
                customer=Party(name="Acme Process Plant", customer_id="C-1001"),
                item=Item(twin_id=tid, description=name, manufacturer=manu, model=model, serial_number=f"SN-{tid.upper()}"),
                performed_at=performed, location="Laboratory",
            ),
            validity=Validity(valid_from=performed, valid_until=performed + timedelta(days=365)),
            results=[
                MeasurementResult(quantity=quantity, value=round(nominal * (1 + rnd.gauss(0, 1e-4)), 6), unit=unit,
                                  expanded_uncertainty=u, coverage_factor=2.0, reference_value=nominal,
                                  conditions={"ambient_temperature": "20.1 degC"}),
            ],
            signatures=[],
        )
        out.append(cert.model_copy(update={"signatures": issuer.keys.sign(certificate_payload(cert))}))
    out.append(CertificateSuperseded(occurred_at=t0 + timedelta(days=21), source=src, aggregate_version=2,
                                     certificate_id="DCC-2026-0001", superseded_by="DCC-2026-0004",
                                     reason="re-calibration after repair"))

    for tid, _, _, _, _, quantity, unit, nominal, u in twins:
        for n in range(readings_per_sensor):
            at = now - timedelta(minutes=5 * (readings_per_sensor - n))
            daily = math.sin(2 * math.pi * n / 288) * u
            out.append(SensorReading(occurred_at=at, source="gateway-plant1", twin_id=tid, sensor_id="s1",
                                     quantity=quantity, value=round(nominal + daily + rnd.gauss(0, u / 4), 6), unit=unit))
    return out
