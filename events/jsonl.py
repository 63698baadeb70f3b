"""Events from JSON lines: one event per line, validated before anything is sent.

Each line is a JSON object with ``event_type`` and the event's fields as in
its schema (timestamps in ISO 8601 with a zone, bytes in base64). When
``event_id`` is absent it is derived from the line's content (UUIDv5), so
publishing the same file twice yields the same ids and sinks deduplicate;
``recorded_at`` defaults to now and ``source`` to the caller's default. A bad line becomes an :class:`~events.errors.InputError`
naming the line, the field and the reason.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from pydantic import ValidationError

from events.errors import InputError
from events.models import EVENT_TYPES, EventMetadata


_LINE_NAMESPACE = uuid.UUID("6f1c2a8e-0b7e-5d7e-9a51-3c4f8e2b9d10")


@dataclass
class ParsedLines:
    events: list[tuple[int, EventMetadata]] = field(default_factory=list)
    errors: list[InputError] = field(default_factory=list)


def parse_line(line_no: int, text: str, *, default_source: str) -> EventMetadata:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(line_no, None, f"not valid JSON: {e.msg} at column {e.colno}") from None
    if not isinstance(obj, dict):
        raise InputError(line_no, None, f"expected a JSON object, got {type(obj).__name__}")
    event_type = obj.get("event_type")
    if event_type is None:
        raise InputError(line_no, "event_type", "missing; one of " + ", ".join(sorted(EVENT_TYPES)))
    model = EVENT_TYPES.get(event_type) if isinstance(event_type, str) else None
    if model is None:
        raise InputError(line_no, "event_type", f"unknown event type {event_type!r}")
    obj.setdefault("source", default_source)
    if "event_id" not in obj:
        content = json.dumps({k: v for k, v in obj.items() if k != "recorded_at"}, sort_keys=True)
        obj["event_id"] = str(uuid.uuid5(_LINE_NAMESPACE, content))
    try:
        return model.model_validate_json(json.dumps(obj))
    except ValidationError as e:
        problems = e.errors()
        first = problems[0]
        fld = ".".join(str(p) for p in first["loc"]) or None
        reason = first["msg"]
        if len(problems) > 1:
            others = "; ".join(f"{'.'.join(str(p) for p in x['loc'])}: {x['msg']}" for x in problems[1:])
            reason += f" (and {len(problems) - 1} more: {others})"
        raise InputError(line_no, fld, reason) from None


def parse_lines(lines: Iterable[str | bytes], *, default_source: str) -> ParsedLines:
    """Parse every line; blank lines are skipped. Line numbers start at 1.

    Lines given as bytes are decoded one by one: a line that is not UTF-8 is an
    error of that line only, the others are still parsed.
    """
    out = ParsedLines()
    for n, raw in enumerate(lines, start=1):
        try:
            text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError as e:
            out.errors.append(InputError(n, None, f"not UTF-8: byte 0x{raw[e.start]:02x} at column {e.start + 1}"))
            continue
        if not text.strip():
            continue
        try:
            out.events.append((n, parse_line(n, text, default_source=default_source)))
        except InputError as e:
            out.errors.append(e)
    return out
