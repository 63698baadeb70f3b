"""The demo's world: two calibration labs, four assets, their certificates.

Everything is deterministic: event ids derive from names, times from a fixed
base, and the labs' keys are generated once and kept in the run directory, so
running the demo again publishes the same events with the same ids and every
sink deduplicates them. One certificate is revoked, one is forged (its
signature does not cover its content), one claims a kind its lab is not
accredited for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from events.canonical import certificate_payload
from events.models import (
    Accreditation,
    AdministrativeData,
    CertificateIssued,
    CertificateRevoked,
    EventMetadata,
    IssuerKeyRegistered,
    Item,
    MeasurementResult,
    Party,
    TwinAttributesChanged,
    TwinRegistered,
    TwinRelated,
    Validity,
)
from events.signing import HybridKeyPair
from streams.ids import derived_id

BASE = datetime(2026, 10, 1, tzinfo=UTC)
SOURCE = "qi-demo"


@dataclass(frozen=True)
class Lab:
    issuer_id: str
    name: str
    body: str
    accreditation_id: str
    scope: tuple[str, ...]


LABS = (
    Lab("lab-berlin", "Kalibrierlabor Berlin GmbH", "DAkkS", "D-K-15001-01-00",
        ("calibration.pressure", "calibration.temperature")),
    Lab("lab-zurich", "Metrologie Zürich AG", "SAS", "SCS 0042", ("calibration.mass", "calibration.humidity")),
)
#: twin id, kind, name, manufacturer, model, quantity, unit, nominal value, uncertainty
TWINS = (
    ("gauge-0001", "pressure-gauge", "Process pressure gauge PG-1", "WIKA", "CPG1500", "pressure", "kPa", 101.3, 0.4),
    ("thermo-0002", "thermometer", "Reference thermometer RT-2", "Fluke", "1524", "temperature", "Cel", 21.0, 0.15),
    ("mass-0003", "mass-standard", "Mass standard 1 kg", "Sartorius", "E2-1kg", "mass", "g", 1000.0, 0.0005),
    ("hygro-0004", "hygrometer", "Climate hygrometer H-4", "Rotronic", "HC2A", "humidity", "%RH", 45.0, 1.2),
)
#: certificate id -> what the platform should conclude
EXPECTED = {
    "DCC-DEMO-0001": "VALID",
    "DCC-DEMO-0002": "VALID, then revoked",
    "DCC-DEMO-0003": "VALID",
    "DCC-DEMO-0004": "INVALID: signature (forged: the value was changed after signing)",
    "DCC-DEMO-0005": "INVALID: accreditation (lab-zurich is not accredited for pressure)",
}


def _id(*parts: object):
    return derived_id("demo", *parts)


def lab_keys(key_dir: Path) -> dict[str, HybridKeyPair]:
    """Each lab's hybrid key pair, generated on first use and kept (mode 0600) in ``key_dir``."""
    keys = {}
    for lab in LABS:
        name = f"demo-{lab.issuer_id}"
        try:
            keys[lab.issuer_id] = HybridKeyPair.load(key_dir, name)
        except Exception:  # noqa: BLE001 - absent or unreadable: make a new pair (first run)
            kp = HybridKeyPair.generate(key_id=f"{lab.issuer_id}/demo-1")
            kp.save(key_dir, name)
            keys[lab.issuer_id] = kp
    return keys


def world_events(key_dir: Path) -> list[EventMetadata]:
    """Issuers, twins and certificates, in causal order."""
    keys = lab_keys(key_dir)
    out: list[EventMetadata] = []
    for lab in LABS:
        kp = keys[lab.issuer_id]
        out.append(IssuerKeyRegistered(
            event_id=_id("issuer", lab.issuer_id, kp.key_id), occurred_at=BASE, source=SOURCE, aggregate_version=1,
            issuer_id=lab.issuer_id, issuer_name=lab.name, key_id=kp.key_id,
            ed25519_public_key=kp.public.ed25519, ml_dsa_parameter_set="ML_DSA_65",
            ml_dsa_public_key=kp.public.ml_dsa_65, valid_from=BASE - timedelta(days=1),
            accreditations=[Accreditation(body=lab.body, accreditation_id=lab.accreditation_id, scope=list(lab.scope))],
        ))
    for tid, kind, name, manu, model, *_ in TWINS:
        out.append(TwinRegistered(
            event_id=_id("twin", tid, 1), occurred_at=BASE + timedelta(hours=1), source=SOURCE, aggregate_version=1,
            twin_id=tid, kind=kind, name=name, manufacturer=manu, model=model, serial_number=f"SN-{tid.upper()}",
            owner="Acme Process Plant", attributes={"site": "plant1", "building": "B2"},
        ))
    out.append(TwinRelated(event_id=_id("twin", "thermo-0002", 2), occurred_at=BASE + timedelta(hours=2),
                           source=SOURCE, aggregate_version=2, twin_id="thermo-0002", relation="calibrated_with",
                           target_twin_id="mass-0003"))
    out.append(TwinAttributesChanged(event_id=_id("twin", "gauge-0001", 2), occurred_at=BASE + timedelta(days=3),
                                     source=SOURCE, aggregate_version=2, twin_id="gauge-0001",
                                     changed={"building": "B3", "line": "L7"}, removed=[]))
    berlin, zurich = LABS
    specs = [  # id, lab, kind, twin index, forged
        ("DCC-DEMO-0001", berlin, "calibration.pressure", 0, False),
        ("DCC-DEMO-0002", berlin, "calibration.temperature", 1, False),
        ("DCC-DEMO-0003", zurich, "calibration.mass", 2, False),
        ("DCC-DEMO-0004", berlin, "calibration.pressure", 0, True),
        ("DCC-DEMO-0005", zurich, "calibration.pressure", 0, False),
    ]
    for i, (cid, lab, kind, t, forged) in enumerate(specs):
        tid, _, name, manu, model, quantity, unit, nominal, u = TWINS[t]
        performed = BASE + timedelta(days=5 + i)
        cert = CertificateIssued(
            event_id=_id("certificate", cid, 1), occurred_at=performed + timedelta(hours=4), source=SOURCE,
            aggregate_version=1, certificate_id=cid, certificate_kind=kind,
            administrative=AdministrativeData(
                issuer_id=lab.issuer_id, issuer_name=lab.name,
                accreditation=Accreditation(body=lab.body, accreditation_id=lab.accreditation_id, scope=list(lab.scope)),
                customer=Party(name="Acme Process Plant", customer_id="C-1001"),
                item=Item(twin_id=tid, description=name, manufacturer=manu, model=model,
                          serial_number=f"SN-{tid.upper()}"),
                performed_at=performed, location="Laboratory",
            ),
            validity=Validity(valid_from=performed, valid_until=performed + timedelta(days=365)),
            results=[MeasurementResult(quantity=quantity, value=nominal, unit=unit, expanded_uncertainty=u,
                                       coverage_factor=2.0, coverage_probability=0.95, reference_value=nominal,
                                       conditions={"ambient_temperature": "20.1 Cel"})],
            signatures=[],
        )
        signed = cert.model_copy(update={"signatures": keys[lab.issuer_id].sign(certificate_payload(cert))})
        if forged:  # the value was changed after the lab signed: the signatures no longer cover it
            result = signed.results[0].model_copy(update={"value": nominal * 1.02})
            signed = signed.model_copy(update={"results": [result]})
        out.append(signed)
    out.append(CertificateRevoked(event_id=_id("certificate", "DCC-DEMO-0002", 2),
                                  occurred_at=BASE + timedelta(days=20), source=SOURCE, aggregate_version=2,
                                  certificate_id="DCC-DEMO-0002", revoked_by="lab-berlin",
                                  reason="reference standard found out of tolerance"))
    return out
