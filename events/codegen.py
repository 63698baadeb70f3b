"""Generate :mod:`events.models` (pydantic types) from the ``.avsc`` files.

``qi schemas codegen`` writes the module; a test regenerates it in memory and
fails if the committed file differs, so schemas and types cannot drift.
Only the newest version of each event type becomes a class: that is the shape
this code reads (older data is resolved to it) and writes.
"""

from __future__ import annotations

import keyword
from pathlib import Path
from typing import Any

from events.errors import SchemaError
from events.schemas import METADATA_FIELDS, NAMESPACE, SchemaCatalog

HEADER = '''"""Event types, GENERATED from schemas/*.avsc by `qi schemas codegen`.

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
'''

#: Python-side conveniences for metadata fields Avro cannot express.
_METADATA_FACTORIES = {"event_id": "new_event_id", "recorded_at": "utc_now"}
_TIMESTAMPS = {"timestamp-millis", "timestamp-micros"}


class _Module:
    def __init__(self) -> None:
        self.blocks: list[str] = []
        self.named: dict[str, tuple[dict[str, Any], str]] = {}  # fullname -> (definition, python name)

    def py_type(self, t: Any, ns: str) -> str:
        if isinstance(t, list):
            parts = [self.py_type(b, ns) for b in t]
            return " | ".join(p for p in parts if p != "None") + (" | None" if "None" in parts else "")
        if isinstance(t, str):
            simple = {"null": "None", "boolean": "bool", "int": "int", "long": "int", "float": "Finite",
                      "double": "Finite", "bytes": "bytes", "string": "str"}
            if t in simple:
                return simple[t]
            full = t if "." in t else f"{ns}.{t}"
            if full not in self.named:
                raise SchemaError(f"reference to undefined type {t}")
            return self.named[full][1]
        kind = t["type"]
        logical = t.get("logicalType")
        if kind in ("long", "int") and logical in _TIMESTAMPS:
            return "AwareDatetime"
        if kind == "string" and logical == "uuid":
            return "UUID"
        if kind == "array":
            return f"list[{self.py_type(t['items'], ns)}]"
        if kind == "map":
            return f"dict[str, {self.py_type(t['values'], ns)}]"
        if kind in ("record", "enum", "fixed"):
            return self.define(t, ns)
        return self.py_type(kind, ns)

    def define(self, t: dict[str, Any], ns: str) -> str:
        node_ns = t.get("namespace", ns)
        full = t["name"] if "." in t["name"] else f"{node_ns}.{t['name']}"
        py_name = full.rsplit(".", 1)[-1]
        if full in self.named:
            if self.named[full][0] != t:
                raise SchemaError(f"named type {full} is defined differently in two schemas")
            return py_name
        self.named[full] = (t, py_name)
        if t["type"] == "enum":
            symbols = ", ".join(repr(s) for s in t["symbols"])
            self.blocks.append(f"{py_name} = Literal[{symbols}]\n")
        elif t["type"] == "fixed":
            self.blocks.append(f"{py_name} = bytes  # fixed[{t['size']}]\n")
        else:
            body = [self.field_line(f, node_ns) for f in t["fields"]]
            self.blocks.append(_class(py_name, "Record", t.get("doc"), [], body))
        return py_name

    def field_line(self, f: dict[str, Any], ns: str, *, override: str | None = None) -> str:
        name = f["name"]
        if keyword.iskeyword(name) or not name.isidentifier():
            raise SchemaError(f"field name {name!r} is not usable as a Python identifier")
        annotation = override or self.py_type(f["type"], ns)
        if name.endswith("_id") and annotation in ("str", "str | None"):
            annotation = "Id" + annotation[3:]  # identifiers are never empty
        if name in _METADATA_FACTORIES:
            return f"{name}: {annotation} = Field(default_factory={_METADATA_FACTORIES[name]})"
        if name == "aggregate_version":
            return f"{name}: {annotation} = Field(ge=1)"
        if "default" not in f:
            return f"{name}: {annotation}"
        default = f["default"]
        if default == []:
            return f"{name}: {annotation} = Field(default_factory=list)"
        if default == {}:
            return f"{name}: {annotation} = Field(default_factory=dict)"
        return f"{name}: {annotation} = {default!r}"


def _class(name: str, base: str, doc: str | None, class_vars: list[str], fields: list[str]) -> str:
    lines = [f"class {name}({base}):"]
    if doc:
        lines.append(f'    """{doc}"""')
        lines.append("")
    lines += [f"    {v}" for v in class_vars]
    lines += [f"    {f}" for f in fields]
    if len(lines) == 1:
        lines.append("    pass")
    return "\n".join(lines) + "\n"


def generate(catalog: SchemaCatalog) -> str:
    """The source of :mod:`events.models` for a catalogue."""
    mod = _Module()
    latest = [catalog.latest(n) for n in catalog.names()]
    meta_src: list[dict[str, Any]] | None = None
    event_blocks = []
    for sv in latest:
        fields = sv.raw["fields"]
        meta = fields[: len(METADATA_FIELDS)]
        comparable = [{k: v for k, v in f.items() if k != "default" or f["name"] != "event_type"} for f in meta]
        if meta_src is None:
            meta_src = comparable
        elif comparable != meta_src:
            raise SchemaError("metadata fields differ from the other schemas", path=str(sv.path))
        own = fields[len(METADATA_FIELDS):]
        versioned = bool(own) and own[0]["name"] == "aggregate_version"
        if versioned:
            own = own[1:]
        body = [f'event_type: Literal["{sv.name}"] = "{sv.name}"']
        body += [mod.field_line(f, NAMESPACE) for f in own]
        class_vars = [
            f'AVRO_NAME: ClassVar[str] = "{sv.name}"',
            f"SCHEMA_VERSION: ClassVar[int] = {sv.version}",
            f'TOPIC_FAMILY: ClassVar[str] = "{sv.topic_family}"',
            f"KEY_FIELDS: ClassVar[tuple[str, ...]] = {sv.key_fields!r}",
        ]
        base = "VersionedEvent" if versioned else "EventMetadata"
        event_blocks.append((sv.name, _class(sv.name, base, sv.raw.get("doc"), class_vars, body)))
    assert meta_src is not None
    meta_fields = [mod.field_line(f, NAMESPACE) for f in meta_src if f["name"] != "event_type"]
    meta_fields.insert(1, "event_type: str")
    out = [HEADER]
    out += mod.blocks
    out.append(_class("EventMetadata", "Event", "Metadata every event carries (the first fields of every schema).", [], meta_fields))
    out.append(_class("VersionedEvent", "EventMetadata",
                      "An event of an aggregate with optimistic concurrency (twins, issuers, certificates).",
                      [], ['aggregate_version: int = Field(ge=1)']))
    out += [block for _, block in event_blocks]
    names = [n for n, _ in event_blocks]
    out.append("#: Every event type by name (the Avro record name, also ``event_type``).")
    out.append("EVENT_TYPES: dict[str, type[EventMetadata]] = {\n" + "".join(f"    {n!r}: {n},\n" for n in names) + "}")
    out.append("AnyEvent = " + " | ".join(names))
    return "\n\n".join(out) + "\n"


def models_path() -> Path:
    return Path(__file__).resolve().parent / "models.py"


def write(catalog: SchemaCatalog, path: Path | None = None) -> Path:
    path = path or models_path()
    path.write_text(generate(catalog))
    return path
