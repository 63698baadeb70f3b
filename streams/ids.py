"""Deterministic event ids for derived events.

An output derived from an input must carry the same ``event_id`` every time
that input is processed, so a redelivered input yields a duplicate that every
sink recognises. ``derived_id("score", reading_event_id)`` is a UUIDv5 in the
project's own namespace over the kind and the parts joined with NUL bytes.
"""

from __future__ import annotations

import uuid

NAMESPACE = uuid.UUID("0b3f5d3e-6a43-5c1a-9d0e-7f1e2c3b4a59")


def derived_id(kind: str, *parts: object) -> uuid.UUID:
    """A UUIDv5 over ``kind`` and ``parts`` (each turned into text with ``str``)."""
    return uuid.uuid5(NAMESPACE, "\x00".join([kind, *(str(p) for p in parts)]))
