"""Which events a point-in-time replay takes, and in what order (pure).

* ``as_of``: events whose ``recorded_at`` <= T ("what did we know on that date"), in log order
  (per partition, offset order; an aggregate's events share a partition).
* ``valid_at``: events whose ``occurred_at`` <= T ("what was true at that time"), per aggregate in
  ``(occurred_at, aggregate_version)`` order, so a late event (occurred before a later change,
  recorded after it) lands where it happened.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

Mode = Literal["as_of", "valid_at"]


def aggregate_of(record: dict[str, Any]) -> str:
    for key in ("twin_id", "certificate_id", "issuer_id"):
        if key in record:
            return f"{key}:{record[key]}"
    return ""


def select(events: Iterable[tuple[int, str, dict[str, Any]]], mode: Mode, at: datetime) -> list[tuple[str, dict]]:
    """``events``: (log position, event type, record) in log order; returns (type, record) to apply."""
    field = "recorded_at" if mode == "as_of" else "occurred_at"
    taken = [(pos, t, r) for pos, t, r in events if r[field] <= at]
    if mode == "valid_at":
        taken.sort(key=lambda e: (aggregate_of(e[2]), e[2]["occurred_at"], e[2].get("aggregate_version", 0), e[0]))
    return [(t, r) for _, t, r in taken]
