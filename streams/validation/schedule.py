"""What the recheck timer has to look at, without parsing every certificate every tick.

Pending certificates are a small set checked every tick; expiry alerts wait in
a heap ordered by the time they fall due. The agent notes each certificate it
saves; after a (re)assignment the timer rebuilds both from one scan of the
local lifecycle Table (recovered from its changelog).
"""

from __future__ import annotations

import heapq
from datetime import timedelta

from streams.validation.facts import CertState


class Schedule:
    def __init__(self, expiring_lead: timedelta) -> None:
        self.lead_s = expiring_lead.total_seconds()
        self.pending: set[bytes] = set()
        self._heap: list[tuple[float, bytes]] = []
        self.assignment: frozenset[int] | None = None

    def note(self, key: bytes, state: CertState | None) -> None:
        if state is None:
            return
        if state.pending:
            self.pending.add(key)
        else:
            self.pending.discard(key)
        if state.status == "VALID" and not state.expiring_sent and state.valid_until is not None:
            heapq.heappush(self._heap, (state.valid_until - self.lead_s, key))

    def rebuild(self, assignment: frozenset[int], items) -> None:
        self.pending.clear()
        self._heap.clear()
        self.assignment = assignment
        for key, raw in items:
            if raw is not None:
                self.note(key, CertState.from_bytes(raw))

    def due_expiries(self, now_s: float) -> list[bytes]:
        out = []
        while self._heap and self._heap[0][0] <= now_s:
            out.append(heapq.heappop(self._heap)[1])
        return out
