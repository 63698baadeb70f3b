"""Test data builders (no I/O)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from events.models import EVENT_TYPES, EventMetadata
from events.schemas import SchemaCatalog


def example_value(t: Any, named: dict[str, Any], n: int) -> Any:
    """A valid value for an Avro type (non-null branch of unions, one item in arrays and maps)."""
    if isinstance(t, list):
        non_null = [b for b in t if b != "null"]
        return example_value(non_null[0], named, n) if non_null else None
    if isinstance(t, str):
        if t in named:
            return example_value(named[t], named, n)
        return {"string": f"s{n}", "long": 1000 + n, "int": n, "double": 1.5 + n, "float": 0.5,
                "boolean": True, "bytes": bytes([n % 256, 1, 2]), "null": None}[t]
    kind = t["type"]
    logical = t.get("logicalType")
    if logical in ("timestamp-micros", "timestamp-millis"):
        return datetime(2026, 11, 1, 12, 0, n % 60, 123000, tzinfo=UTC)
    if logical == "uuid":
        return uuid.UUID(int=n + 1)
    if kind in ("record", "enum", "fixed"):
        named[t["name"]] = t
        named[f"qi.events.{t['name']}"] = t
        if kind == "enum":
            return t["symbols"][n % len(t["symbols"])]
        if kind == "fixed":
            return bytes(t["size"])
        return {f["name"]: example_value(f["type"], named, n) for f in t["fields"]}
    if kind == "array":
        return [example_value(t["items"], named, n)]
    if kind == "map":
        return {"k": example_value(t["values"], named, n)}
    return example_value(kind, named, n)


def example_event(catalog: SchemaCatalog, name: str, n: int = 0) -> EventMetadata:
    """A valid instance of every field of an event type's newest schema."""
    raw = catalog.latest(name).raw
    record = example_value(raw, {}, n)
    record["event_type"] = name
    record["event_id"] = uuid.uuid4()
    if "aggregate_version" in record:
        record["aggregate_version"] = n + 1
    return EVENT_TYPES[name].model_validate(record)


def schemas_with(tmp_path, extra: dict[str, dict]):
    """A copy of schemas/ in ``tmp_path`` plus extra files ({file name: schema}); returns the directory."""
    import json
    import shutil

    from events.schemas import default_schema_dir

    d = tmp_path / "schemas"
    shutil.copytree(default_schema_dir(), d)
    for name, schema in extra.items():
        (d / name).write_text(json.dumps(schema, indent=2))
    return d


def reading_v2(catalog: SchemaCatalog) -> dict[str, Any]:
    """SensorReading's newest schema plus an optional `quality` field: a compatible v2."""
    import copy

    v2 = copy.deepcopy(catalog.latest("SensorReading").raw)
    v2["fields"].append({"name": "quality", "type": ["null", "string"], "default": None})
    return v2
