"""The recheck timer's schedule: pending set and expiry heap."""

from __future__ import annotations

from datetime import timedelta

from streams.validation.facts import CertState
from streams.validation.schedule import Schedule


def test_pending_and_expiry_are_scheduled_and_rebuilt_from_a_scan() -> None:
    s = Schedule(timedelta(seconds=100))
    s.note(b"p", CertState("p", "PENDING", pending=[{"event_id": "x"}]))
    s.note(b"v", CertState("v", "VALID", valid_until=1_000.0))
    s.note(b"i", CertState("i", "INVALID", valid_until=1_000.0))
    s.note(b"sent", CertState("sent", "VALID", valid_until=1_000.0, expiring_sent=True))
    assert s.pending == {b"p"}
    assert s.due_expiries(899.0) == []
    assert s.due_expiries(900.0) == [b"v"]
    assert s.due_expiries(950.0) == []
    s.note(b"p", CertState("p", "VALID", valid_until=2_000.0))
    assert s.pending == set()
    s.rebuild(frozenset({0}), [(b"a", CertState("a", "VALID", valid_until=500.0).to_bytes()), (b"b", None)])
    assert s.assignment == frozenset({0}) and s.due_expiries(400.0) == [b"a"]
