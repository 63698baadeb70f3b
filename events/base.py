"""Base classes of the generated event types (:mod:`events.models`).

Only behaviour lives here; every field comes from the ``.avsc`` files through
:mod:`events.codegen`, so the Python types cannot drift from the schemas.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
import math
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, ValidationInfo
from pydantic_core import PydanticCustomError


def new_event_id() -> uuid.UUID:
    return uuid.uuid4()


def utc_now() -> datetime:
    return datetime.now(UTC)


#: An identifier (string fields named ``*_id``): never empty or blank.
Id = Annotated[str, StringConstraints(min_length=1, pattern=r"\S")]

#: Validation context of events read back from the log (``Decoded.to_event``): what is already on
#: the log is not refused for non-finite numbers, so workers can judge it (and dead-letter it).
FROM_LOG = "qi.from_log"


def _finite(value: float, info: ValidationInfo) -> float:
    if not math.isfinite(value) and not (info.context and info.context.get(FROM_LOG)):
        raise PydanticCustomError("finite_number", "Input should be a finite number")
    return value


#: A float field: NaN and infinities are refused when an event is built (Python API, ``qi publish``).
Finite = Annotated[float, AfterValidator(_finite)]


class Record(BaseModel):
    """An Avro record: immutable, no unknown fields, bytes as base64 in JSON."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
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
