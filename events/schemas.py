"""The schema catalogue: every ``schemas/<EventType>.v<N>.avsc`` file, parsed once.

The ``.avsc`` files are the source of truth. Each is a self-contained Avro
record schema with two catalogue attributes Avro ignores:

* ``qi.topic``: the topic family the event lives on (``twins``, ``readings``, ...);
* ``qi.key``: the fields whose values, joined with ``/``, make the Kafka key.

Old versions stay in the directory; the newest version of each event type is
the one this code writes, and every version must stay readable by it
(see :mod:`events.compat`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro

from events.errors import SchemaError

NAMESPACE = "qi.events"
_FILE = re.compile(r"^(?P<name>[A-Z][A-Za-z0-9]*)\.v(?P<version>[1-9][0-9]*)\.avsc$")

#: Metadata every event carries, in this order, at the top of its record.
METADATA_FIELDS = (
    "event_id",
    "event_type",
    "occurred_at",
    "recorded_at",
    "source",
    "correlation_id",
    "causation_id",
)


def default_schema_dir() -> Path:
    """``schemas/`` at the project root (next to this package)."""
    return Path(__file__).resolve().parent.parent / "schemas"


def normalized_text(schema: dict[str, Any]) -> str:
    """The JSON text registered for a schema: sorted keys, no whitespace.

    Unlike Avro's Parsing Canonical Form it keeps defaults, docs and custom
    attributes, so two versions that differ only in a default are different
    schemas with different ids.
    """
    return json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def parse(schema: dict[str, Any]) -> dict[str, Any]:
    """Parse with fastavro in a fresh name space (schemas never share named types)."""
    return fastavro.parse_schema(schema, named_schemas={})


@dataclass(frozen=True)
class SchemaVersion:
    """One version of one event type's schema."""

    name: str
    version: int
    path: Path
    raw: dict[str, Any] = field(repr=False)
    parsed: dict[str, Any] = field(repr=False, compare=False)
    topic_family: str
    key_fields: tuple[str, ...]

    @property
    def fullname(self) -> str:
        return f"{self.raw.get('namespace', NAMESPACE)}.{self.name}"

    @property
    def text(self) -> str:
        return normalized_text(self.raw)


class SchemaCatalog:
    """All schema versions in a directory, validated and parsed once."""

    def __init__(self, versions: list[SchemaVersion]) -> None:
        self._by_name: dict[str, list[SchemaVersion]] = {}
        for v in sorted(versions, key=lambda v: (v.name, v.version)):
            self._by_name.setdefault(v.name, []).append(v)
        for name, vs in self._by_name.items():
            expected = list(range(1, len(vs) + 1))
            if [v.version for v in vs] != expected:
                raise SchemaError(f"versions of {name} must be 1..N without gaps, got {[v.version for v in vs]}")

    @classmethod
    def load(cls, directory: Path | None = None) -> SchemaCatalog:
        directory = directory or default_schema_dir()
        if not directory.is_dir():
            raise SchemaError("schema directory not found", path=str(directory))
        versions = [_load_file(p) for p in sorted(directory.glob("*.avsc"))]
        if not versions:
            raise SchemaError("no .avsc files", path=str(directory))
        return cls(versions)

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def latest(self, name: str) -> SchemaVersion:
        try:
            return self._by_name[name][-1]
        except KeyError:
            raise SchemaError(f"unknown event type {name!r}") from None

    def versions(self, name: str) -> list[SchemaVersion]:
        return list(self._by_name[name])

    def __iter__(self) -> Iterator[SchemaVersion]:
        for vs in self._by_name.values():
            yield from vs


def _load_file(path: Path) -> SchemaVersion:
    m = _FILE.match(path.name)
    if not m:
        raise SchemaError("file name must be <EventType>.v<N>.avsc", path=str(path))
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise SchemaError(f"not JSON: {e}", path=str(path)) from e
    name = m["name"]
    if raw.get("type") != "record" or raw.get("name") != name:
        raise SchemaError(f"must be a record named {name}", path=str(path))
    if raw.get("namespace", NAMESPACE) != NAMESPACE:
        raise SchemaError(f"namespace must be {NAMESPACE}", path=str(path))
    try:
        parsed = parse(raw)
    except Exception as e:  # fastavro raises several unrelated types for bad schemas
        raise SchemaError(f"not a valid Avro schema: {e}", path=str(path)) from e
    field_names = [f["name"] for f in raw["fields"]]
    if tuple(field_names[: len(METADATA_FIELDS)]) != METADATA_FIELDS:
        raise SchemaError(f"must start with the metadata fields {METADATA_FIELDS}", path=str(path))
    topic = raw.get("qi.topic")
    key = raw.get("qi.key")
    if not isinstance(topic, str) or not isinstance(key, list) or not key:
        raise SchemaError("needs 'qi.topic' (string) and 'qi.key' (list of field names)", path=str(path))
    types = {f["name"]: f["type"] for f in raw["fields"]}
    for k in key:
        if k not in types:
            raise SchemaError(f"key field {k!r} is not a field", path=str(path))
    return SchemaVersion(
        name=name,
        version=int(m["version"]),
        path=path,
        raw=raw,
        parsed=parsed,
        topic_family=topic,
        key_fields=tuple(key),
    )
