"""The hand-written AuditEntryAppended encoder writes exactly what the serde writes."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from events import framing
from events.registry import BuiltinRegistry
from events.serde import Serde
from events.topics import TopicNames
from streams.audit.entry_codec import EntryEncoder


@pytest.mark.parametrize("causation,etype,index,offset", [
    (None, None, 0, 0), ("3f2c0c5e-8a4b-4a0e-9d43-7c1c8f7e2b10", "CertificateIssued", 2**40 + 3, 123456789),
    ("00000000-0000-0000-0000-000000000001", "SensorReading", 63, -1 + 2**31),
])
def test_same_bytes_as_the_serde(catalog, causation, etype, index, offset):
    serde = Serde(catalog, BuiltinRegistry(catalog), TopicNames("x."))
    asyncio.run(serde.prepare())
    at = datetime(2026, 11, 23, 21, 0, 1, 999999, tzinfo=UTC)
    eid = str(uuid.uuid4())
    h = bytes(range(32))
    enc = EntryEncoder(framing.header(serde.schema_id("AuditEntryAppended")), "qi-audit", "qi.local/audit")
    got = enc.encode(eid, at, causation, index, h, "qi.readings.v1", 5, offset, causation, etype)
    want = serde.encode("AuditEntryAppended", {
        "event_id": eid, "event_type": "AuditEntryAppended", "occurred_at": at, "recorded_at": at,
        "source": "qi-audit", "correlation_id": None, "causation_id": causation, "log_id": "qi.local/audit",
        "leaf_index": index, "leaf_hash": h, "source_topic": "qi.readings.v1", "source_partition": 5,
        "source_offset": offset, "source_event_id": causation, "source_event_type": etype})
    assert got == want
    assert serde.decode(got).record["leaf_index"] == index


def test_the_fast_event_id_is_uuid5():
    from streams.audit.writer import audit_event_id, audit_event_id_str

    for n in (0, 1, 255, 10**9):
        assert audit_event_id_str("leaf", "qi.local/audit", n) == str(audit_event_id("leaf", "qi.local/audit", n))
