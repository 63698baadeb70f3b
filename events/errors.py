"""Errors of the event-log layer.

Every error here derives from :class:`EventsError`; callers branch on the
class and its attributes, never on message text::

    EventsError
    ├── SchemaError              a schema file is missing, unparsable or inconsistent
    │   └── CompatibilityError   a schema version breaks BACKWARD compatibility
    ├── RegistryError            the schema registry failed or refused (``retriable``)
    ├── EncodeError              an event does not fit its schema
    ├── DecodeError              bytes that cannot become an event: poison (``kind``)
    │   ├── NotFramedError       not Confluent framing (magic byte / length)
    │   ├── UnknownSchemaError   a schema id no registry knows
    │   └── PayloadError         Avro body does not match its writer schema
    ├── InputError               user input (JSON lines) is not a valid event (``line``, ``field``)
    └── PublishError             the broker did not confirm delivery (``retriable``)
"""

from __future__ import annotations

from typing import Literal

#: Why a record is poison; the values are the DeadLetter ``error_kind`` symbols.
PoisonKind = Literal[
    "NOT_FRAMED", "UNKNOWN_SCHEMA", "BAD_PAYLOAD", "VALIDATION_FAILED", "BAD_SIGNATURE", "PROCESSING_ERROR"
]


class EventsError(Exception):
    """Root of every error raised by the ``events`` package."""


class SchemaError(EventsError):
    """A schema file is missing, unparsable or inconsistent with the catalogue rules."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


class CompatibilityError(SchemaError):
    """A schema version cannot read data written with an earlier version."""

    def __init__(self, name: str, version: int, against: int, problems: list[str]) -> None:
        super().__init__(
            f"{name} v{version} is not BACKWARD compatible with v{against}: " + "; ".join(problems)
        )
        self.name = name
        self.version = version
        self.against = against
        self.problems = problems


class RegistryError(EventsError):
    """The schema registry could not be reached, or refused a request."""

    def __init__(self, message: str, *, retriable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retriable = retriable
        self.status = status


class EncodeError(EventsError):
    """An event could not be encoded with its schema."""

    def __init__(self, event_type: str, message: str) -> None:
        super().__init__(f"cannot encode {event_type}: {message}")
        self.event_type = event_type


class DecodeError(EventsError):
    """Bytes that cannot be turned into an event. Always poison: never retried."""

    kind: PoisonKind = "BAD_PAYLOAD"


class NotFramedError(DecodeError):
    """The bytes do not start with the Confluent magic byte and a 4-byte schema id."""

    kind: PoisonKind = "NOT_FRAMED"


class UnknownSchemaError(DecodeError):
    """The schema id in the framing is not known to the registry."""

    kind: PoisonKind = "UNKNOWN_SCHEMA"

    def __init__(self, schema_id: int) -> None:
        super().__init__(f"unknown schema id {schema_id}")
        self.schema_id = schema_id


class PayloadError(DecodeError):
    """The Avro body does not decode with its writer schema."""

    kind: PoisonKind = "BAD_PAYLOAD"


class InputError(EventsError):
    """A line of user input is not a valid event. Carries where and why."""

    def __init__(self, line: int, field: str | None, reason: str) -> None:
        where = f"line {line}" + (f", field {field}" if field else "")
        super().__init__(f"{where}: {reason}")
        self.line = line
        self.field = field
        self.reason = reason


class PublishError(EventsError):
    """The broker did not confirm an event."""

    def __init__(self, message: str, *, event_id: str | None, topic: str, retriable: bool) -> None:
        super().__init__(message)
        self.event_id = event_id
        self.topic = topic
        self.retriable = retriable
