"""Encoding and decoding of events on the wire.

Hot path rules: schemas are parsed once; encode is one fastavro write after a
precomputed 5-byte header; decode is a dict lookup by schema id plus one
fastavro read. Registry I/O happens only in :meth:`Serde.prepare` and, for a
schema id seen for the first time, :meth:`Serde.resolve`.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from fastavro import schemaless_reader, schemaless_writer

from events import framing
from events.base import FROM_LOG, Event
from events.errors import EncodeError, PayloadError, UnknownSchemaError
from events.models import EVENT_TYPES
from events.registry.base import SchemaRegistry
from events.schemas import NAMESPACE, SchemaCatalog, parse
from events.topics import TopicNames


class Decoded(NamedTuple):
    """A decoded record: its event type, the writer's schema id and the Avro record (a NamedTuple:
    one per record on the hot path, decision 0148)."""

    event_type: str
    schema_id: int
    record: dict[str, Any]

    def to_event(self) -> Event:
        """The typed event (validated); ``KeyError`` for an event type this code does not know.

        Validated as read from the log: non-finite numbers already on the log are let through
        (``events.base.FROM_LOG``) for the worker to judge; building an event refuses them.
        """
        return EVENT_TYPES[self.event_type].model_validate(self.record, context={FROM_LOG: True})


@dataclass(frozen=True, slots=True)
class _Writer:
    header: bytes
    schema: dict[str, Any]


@dataclass(slots=True)
class _Reader:
    event_type: str
    writer: dict[str, Any]
    reader: dict[str, Any] | None  # None: writer is the newest version, no resolution
    writer_raw: dict[str, Any]
    reader_raw: dict[str, Any] | None
    plain: tuple[dict[str, Any], dict[str, Any] | None] | None = None  # parsed lazily, logical types stripped
    id_first: bool | None = None  # the writer schema starts with event_id: string (lazily)

    def plain_schemas(self) -> tuple[dict[str, Any], dict[str, Any] | None]:
        if self.plain is None:
            self.plain = (
                parse(strip_logical_types(self.writer_raw)),
                parse(strip_logical_types(self.reader_raw)) if self.reader_raw is not None else None,
            )
        return self.plain


_UUID_TEXT = re.compile(rb"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _starts_with_event_id(schema: dict[str, Any]) -> bool:
    """True if the record's first field is ``event_id``, a string (every event envelope)."""
    fields = schema.get("fields") or [{}]
    t = fields[0].get("type")
    return fields[0].get("name") == "event_id" and (t == "string" or isinstance(t, dict) and t.get("type") == "string")


def strip_logical_types(schema: Any) -> Any:
    """A copy of a schema without ``logicalType``: uuids stay strings, timestamps int micros."""
    if isinstance(schema, dict):
        return {k: strip_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [strip_logical_types(x) for x in schema]
    return schema


def subject(topic: str, event_type: str) -> str:
    """Confluent TopicRecordNameStrategy subject."""
    return f"{topic}-{NAMESPACE}.{event_type}"


class Serde:
    """Encodes events to Confluent-framed Avro and decodes them back."""

    def __init__(self, catalog: SchemaCatalog, registry: SchemaRegistry, topics: TopicNames) -> None:
        self._catalog = catalog
        self._registry = registry
        self._topics = topics
        self._writers: dict[str, _Writer] = {}
        self._readers: dict[int, _Reader] = {}

    @property
    def catalog(self) -> SchemaCatalog:
        return self._catalog

    async def prepare(self) -> None:
        """Register the newest version of every event type and cache what encoding needs."""
        for name in self._catalog.names():
            sv = self._catalog.latest(name)
            topic = self._topics.topic(sv.topic_family)
            sid = await self._registry.register(subject(topic, name), sv.text)
            self._writers[name] = _Writer(framing.header(sid), sv.parsed)
            self._readers[sid] = _Reader(name, sv.parsed, None, sv.raw, None)

    def schema_id(self, event_type: str) -> int:
        return framing.schema_id_of(self._writer(event_type).header)

    def _writer(self, event_type: str) -> _Writer:
        try:
            return self._writers[event_type]
        except KeyError:
            if event_type in EVENT_TYPES:
                raise EncodeError(event_type, "serde not prepared: call `await serde.prepare()` first") from None
            raise EncodeError(event_type, "unknown event type") from None

    def writer_of(self, event_type: str) -> tuple[bytes, dict[str, Any]]:
        """The frame header and parsed writer schema ``encode`` uses (for hand-written batch encoders)."""
        w = self._writer(event_type)
        return w.header, w.schema

    def encode(self, event_type: str, record: Mapping[str, Any]) -> bytes:
        """Frame and encode an Avro record (a dict shaped like the schema)."""
        w = self._writer(event_type)
        buf = io.BytesIO()
        buf.write(w.header)
        try:
            schemaless_writer(buf, w.schema, record)
        except Exception as e:  # fastavro raises TypeError/ValueError/KeyError/AttributeError...
            raise EncodeError(event_type, _explain(w.schema, record, e)) from e
        return buf.getvalue()

    def encode_event(self, event: Event) -> bytes:
        return self.encode(event.AVRO_NAME, event.to_avro())

    def decode(self, data: bytes, *, plain: bool = False) -> Decoded:
        """Decode a framed record. Raises a :class:`~events.errors.DecodeError` for poison.

        ``plain=True`` skips logical types (uuids stay strings, timestamps int
        microseconds): about 1.7x faster, for consumers that want those anyway.
        """
        sid = framing.schema_id_of(data)
        r = self._readers.get(sid)
        if r is None:
            raise UnknownSchemaError(sid)
        writer, reader = r.plain_schemas() if plain else (r.writer, r.reader)
        buf = io.BytesIO(data)
        buf.seek(framing.HEADER_SIZE)
        try:
            record = schemaless_reader(buf, writer, reader)
        except Exception as e:  # truncated or garbage bodies raise many unrelated types
            raise PayloadError(f"Avro body does not decode with schema {sid} ({r.event_type}): {e!r}") from e
        if buf.tell() != len(data):
            raise PayloadError(
                f"{len(data) - buf.tell()} trailing bytes after a {r.event_type} record (schema {sid})"
            )
        return Decoded(r.event_type, sid, record)

    def decode_envelope(self, data: bytes) -> Decoded:
        """The event type (from the schema id) and ``record = {"event_id": str}``, without decoding the body.

        For consumers that keep the bytes as they are and need only the id (the audit log): the
        framing and the schema id are checked (:class:`~events.errors.NotFramedError`,
        :class:`UnknownSchemaError`), the body is not. ``event_id`` is the first field of every
        event schema; if the body does not start with a UUID string, ``record`` is ``{}``.
        """
        sid = framing.schema_id_of(data)
        r = self._readers.get(sid)
        if r is None:
            raise UnknownSchemaError(sid)
        # a 36-byte string is written as its length 72 (zigzag varint of 36), then the bytes
        if r.id_first is None:
            r.id_first = _starts_with_event_id(r.writer_raw)
        if r.id_first and data[5:6] == b"\x48" and _UUID_TEXT.fullmatch(data, 6, 42):
            return Decoded(r.event_type, sid, {"event_id": data[6:42].decode("ascii")})
        return Decoded(r.event_type, sid, {})

    async def resolve(self, schema_id: int) -> bool:
        """Fetch an unknown writer schema from the registry; True if decoding can now work.

        Raises :class:`UnknownSchemaError` if the registry does not know the id.
        """
        if schema_id in self._readers:
            return True
        text = await self._registry.schema_text(schema_id)
        raw = json.loads(text)
        name = raw.get("name", "")
        writer = parse(raw)
        known = name in self._catalog.names()
        reader = self._catalog.latest(name).parsed if known else None
        reader_raw = self._catalog.latest(name).raw if known else None
        self._readers[schema_id] = _Reader(name, writer, reader, raw, reader_raw)
        return True

    async def decode_resolving(self, data: bytes, *, plain: bool = False) -> Decoded:
        """:meth:`decode`, fetching the writer schema once if its id is new to this process."""
        try:
            return self.decode(data, plain=plain)
        except UnknownSchemaError as e:
            await self.resolve(e.schema_id)
            return self.decode(data, plain=plain)


def _explain(schema: dict[str, Any], record: Mapping[str, Any], error: Exception) -> str:
    """A readable reason for an encoding failure (slow path only)."""
    from fastavro.validation import ValidationError, validate

    try:
        validate(record, schema, raise_errors=True)
    except ValidationError as v:
        return "; ".join(str(x) for x in v.errors) or str(error)
    except Exception:
        pass
    return f"{type(error).__name__}: {error}"
