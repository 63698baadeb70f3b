"""Deterministic event ids for derived events.

An output derived from an input must carry the same ``event_id`` every time
that input is processed, so a redelivered input yields a duplicate that every
sink recognises. ``derived_id("score", reading_event_id)`` is a UUIDv5 in the
project's own namespace over the kind and the parts joined with NUL bytes.
"""

from __future__ import annotations

import hashlib
import uuid

import numpy as np

NAMESPACE = uuid.UUID("0b3f5d3e-6a43-5c1a-9d0e-7f1e2c3b4a59")


def derived_id(kind: str, *parts: object) -> uuid.UUID:
    """A UUIDv5 over ``kind`` and ``parts`` (each turned into text with ``str``)."""
    return uuid.uuid5(NAMESPACE, "\x00".join([kind, *(str(p) for p in parts)]))


_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
#: where the 32 hex digits go in the 36 characters of a UUID's text form (dashes at 8, 13, 18, 23)
_HEX_AT = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])


def derived_ids(kind: str, parts: list[str]) -> list[str]:
    """``[str(derived_id(kind, p)) for p in parts]``, batched: ~4x faster for a whole batch.

    One SHA-1 per part from a copy of the hashed prefix (namespace and kind), then the version and
    variant bits and the text form for all parts at once in numpy. Tested equal to :func:`derived_id`.
    """
    if not parts:
        return []
    prefix = hashlib.sha1(NAMESPACE.bytes + f"{kind}\x00".encode())
    digests = []
    for p in parts:
        h = prefix.copy()
        h.update(p.encode())
        digests.append(h.digest())
    raw = np.frombuffer(b"".join(digests), np.uint8).reshape(len(parts), 20)[:, :16].copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x50  # version 5
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    text = np.full((len(parts), 36), ord("-"), np.uint8)
    digits = np.empty((len(parts), 32), np.uint8)
    digits[:, 0::2] = _HEX[raw >> 4]
    digits[:, 1::2] = _HEX[raw & 0x0F]
    text[:, _HEX_AT] = digits
    flat = text.tobytes().decode("ascii")
    return [flat[i:i + 36] for i in range(0, 36 * len(parts), 36)]
