"""BACKWARD compatibility: the checker, and the suite-level gate on schemas/."""

import copy
import io
import json
import shutil
import subprocess
import sys

import fastavro
import pytest

from events import compat
from events.schemas import SchemaCatalog, default_schema_dir, parse
from tests.fixtures import example_value


def test_the_catalogue_is_backward_compatible(catalog):
    assert compat.check_catalog(catalog) == []


def _reading(catalog):
    return copy.deepcopy(catalog.latest("SensorReading").raw)


def _field(schema, name):
    return next(f for f in schema["fields"] if f["name"] == name)


def _breaking_changes(catalog):
    new_required = _reading(catalog)
    new_required["fields"].append({"name": "calibrated", "type": "boolean"})
    narrowed = _reading(catalog)
    _field(narrowed, "value")["type"] = "int"
    renamed = _reading(catalog)
    _field(renamed, "unit")["name"] = "units"
    logical = _reading(catalog)
    _field(logical, "occurred_at")["type"] = {"type": "long", "logicalType": "timestamp-millis"}
    alerts = copy.deepcopy(catalog.latest("AnomalyDetected").raw)
    _field(alerts, "state")["type"]["symbols"] = ["RAISED"]
    return {"new field without default": new_required, "double to int": narrowed,
            "renamed field": renamed, "logical type": logical, "enum symbol removed": alerts}


@pytest.mark.parametrize("change", ["new field without default", "double to int", "renamed field",
                                    "logical type", "enum symbol removed"])
def test_breaking_changes_are_caught(catalog, change):
    newer = _breaking_changes(catalog)[change]
    older = catalog.latest(newer["name"]).raw
    assert compat.problems(newer, older), change


def test_compatible_changes_pass_and_really_read_old_data(catalog):
    older = catalog.latest("SensorReading").raw
    newer = _reading(catalog)
    newer["fields"].append({"name": "quality", "type": ["null", "string"], "default": None})
    newer["fields"].append({"name": "sequence", "type": "long", "default": 0})
    _field(newer, "unit")["aliases"] = []
    assert compat.problems(newer, older) == []
    # and fastavro's own schema resolution agrees: old bytes read with the new schema
    record = example_value(older, {}, 3)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parse(older), record)
    buf.seek(0)
    out = fastavro.schemaless_reader(buf, parse(older), parse(newer))
    assert out["sequence"] == 0 and out["quality"] is None and out["value"] == record["value"]


def test_promotions_follow_the_avro_spec():
    w = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]}
    r = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "long"}]}
    assert compat.problems(r, w) == []
    assert compat.problems(w, r)  # long -> int is a narrowing


def test_the_suite_gate_fails_on_an_incompatible_version(tmp_path, catalog):
    """A deliberately incompatible SensorReading v2 in schemas/ fails `qi schemas check`."""
    d = tmp_path / "schemas"
    shutil.copytree(default_schema_dir(), d)
    v2 = _breaking_changes(catalog)["new field without default"]
    (d / "SensorReading.v2.avsc").write_text(json.dumps(v2, indent=2))
    errors = compat.check_catalog(SchemaCatalog.load(d))
    assert [(e.name, e.version, e.against) for e in errors] == [("SensorReading", 2, 1)]
    assert "calibrated: new field without a default" in str(errors[0])


def test_schemas_check_command_passes_on_the_repository():
    proc = subprocess.run([sys.executable, "-m", "qi", "schemas", "check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "compatible, models up to date" in proc.stdout
