"""Errors of the MQTT bridge; callers branch on the class and ``reason``, never on text.

    BridgeError
    ├── MappingConfigError   the mapping file is invalid (``path``, ``line``, ``field``)
    └── ConversionError      one MQTT message cannot become events (``reason``): a dead letter
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

from events.errors import PoisonKind


class BridgeError(Exception):
    """Root of the bridge's errors."""


class MappingConfigError(BridgeError):
    """The mapping file is invalid; names the file, the line (when known) and the field."""

    def __init__(self, path: Path | str, line: int | None, field: str | None, reason: str) -> None:
        where = f"{path}" + (f", line {line}" if line else "") + (f", field '{field}'" if field else "")
        super().__init__(f"{where}: {reason}")
        self.path, self.line, self.field, self.reason = str(path), line, field, reason


class Reason(str, Enum):
    """Why a message became a dead letter. The value starts the DeadLetter's error_message."""

    OVERSIZED = "oversized"
    BAD_JSON = "bad_json"
    WRONG_TYPE = "wrong_type"
    NON_FINITE = "non_finite"
    UNMAPPED_TOPIC = "unmapped_topic"
    MISSING_FIELD = "missing_field"
    PROCESSING_ERROR = "processing_error"  # a bug in the bridge: the message is kept, not lost

    @property
    def kind(self) -> PoisonKind:
        """The DeadLetter ``error_kind`` for this reason."""
        if self is Reason.PROCESSING_ERROR:
            return "PROCESSING_ERROR"
        return "BAD_PAYLOAD" if self in (Reason.OVERSIZED, Reason.BAD_JSON) else "VALIDATION_FAILED"


class ConversionError(BridgeError):
    """An MQTT message that cannot be converted; it goes to the dead-letter topic."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason, self.detail = reason, detail
