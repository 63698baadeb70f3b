"""Base classes of the generated event types (:mod:`events.models`).

Only behaviour lives here; every field comes from the ``.avsc`` files through
:mod:`events.codegen`, so the Python types cannot drift from the schemas.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, StringConstraints


def new_event_id() -> uuid.UUID:
    return uuid.uuid4()


def utc_now() -> datetime:
    return datetime.now(UTC)


#: An identifier (string fields named ``*_id``): never empty or blank.
Id = Annotated[str, StringConstraints(min_length=1, pattern=r"\S")]


class Record(BaseModel):
    """An Avro record: immutable, no unknown fields, bytes as base64 in JSON, numbers finite."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        allow_inf_nan=False,
        ser_json_bytes="base64",
        val_json_bytes="base64",
    )


class Event(Record):
    """An event on the log. Subclasses are generated, one per event type."""

    AVRO_NAME: ClassVar[str]
    SCHEMA_VERSION: ClassVar[int]
    TOPIC_FAMILY: ClassVar[str]
    KEY_FIELDS: ClassVar[tuple[str, ...]]

    def key(self) -> str:
        """The Kafka key: the aggregate id (``qi.key`` fields joined with ``/``)."""
        return "/".join(str(getattr(self, f)) for f in self.KEY_FIELDS)

    def to_avro(self) -> dict[str, Any]:
        """The record as fastavro writes it (Python values, nested dicts)."""
        return self.model_dump()
