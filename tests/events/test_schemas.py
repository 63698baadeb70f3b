import json
import shutil

import pytest

from events.errors import SchemaError
from events.schemas import METADATA_FIELDS, SchemaCatalog, default_schema_dir

ARCHITECTURE_EVENTS = {
    "twins": {"TwinRegistered", "TwinAttributesChanged", "TwinRelated", "TwinUnrelated", "TwinDecommissioned"},
    "issuers": {"IssuerKeyRegistered", "IssuerKeyRevoked"},
    "certificates": {"CertificateIssued", "CertificateRevoked", "CertificateSuperseded"},
    "readings": {"SensorReading"},
    "validations": {"CertificateValidated"},
    "scores": {"AnomalyScored"},
    "alerts": {"AnomalyDetected", "CertificateExpiring"},
    "audit": {"AuditEntryAppended", "TreeHeadSigned"},
    "deadletter": {"DeadLetter"},
}


def test_every_event_of_the_brief_has_a_schema_on_its_topic(catalog):
    found: dict[str, set[str]] = {}
    for name in catalog.names():
        found.setdefault(catalog.latest(name).topic_family, set()).add(name)
    assert found == ARCHITECTURE_EVENTS


def test_metadata_and_versioning(catalog):
    for name in catalog.names():
        sv = catalog.latest(name)
        fields = [f["name"] for f in sv.raw["fields"]]
        assert tuple(fields[: len(METADATA_FIELDS)]) == METADATA_FIELDS, name
        versioned = sv.topic_family in {"twins", "certificates", "issuers"}
        assert ("aggregate_version" in fields) == versioned, name


def test_certificate_has_the_dcc_shape(catalog):
    fields = {f["name"]: f for f in catalog.latest("CertificateIssued").raw["fields"]}
    assert {"administrative", "validity", "results", "signatures"} <= set(fields)
    result_fields = {f["name"] for f in fields["results"]["type"]["items"]["fields"]}
    assert {"quantity", "value", "unit", "expanded_uncertainty", "coverage_factor"} <= result_fields


def _copy(tmp_path):
    d = tmp_path / "schemas"
    shutil.copytree(default_schema_dir(), d)
    return d


def test_bad_schema_files_are_named_in_the_error(tmp_path):
    d = _copy(tmp_path)
    (d / "SensorReading.v2.avsc").write_text("{not json")
    with pytest.raises(SchemaError, match=r"SensorReading.v2.avsc: not JSON"):
        SchemaCatalog.load(d)


def test_version_gaps_are_rejected(tmp_path):
    d = _copy(tmp_path)
    shutil.copy(d / "SensorReading.v1.avsc", d / "SensorReading.v3.avsc")
    with pytest.raises(SchemaError, match="without gaps"):
        SchemaCatalog.load(d)


def test_key_fields_must_exist(tmp_path):
    d = _copy(tmp_path)
    raw = json.loads((d / "SensorReading.v1.avsc").read_text())
    raw["qi.key"] = ["nope"]
    (d / "SensorReading.v1.avsc").write_text(json.dumps(raw))
    with pytest.raises(SchemaError, match="key field 'nope'"):
        SchemaCatalog.load(d)
