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


def test_leaf_event_ids_are_the_uuid5_ids():
    from streams.audit.writer import LeafEventIds, audit_event_id

    ids = LeafEventIds("qi.local/audit")
    for n in (0, 1, 7, 255, 65_536, 10**12):
        assert ids(n) == str(audit_event_id("leaf", "qi.local/audit", n))


def test_the_partition_leaf_hasher_is_the_leaf_definition():
    from streams.audit.hashing import partition_leaf_hasher, record_leaf_hash

    for topic, part in (("qi.readings.v1", 0), ("qi.twins.v1", 70_000)):
        leaf = partition_leaf_hasher(topic, part)
        for off, key, value in ((0, None, b""), (5, b"", b"v"), (2**40, b"tw-1", bytes(range(256)) * 3)):
            assert leaf(off, key, value) == record_leaf_hash(topic, part, off, key, value)


def test_verify_reads_entries_exactly_as_the_serde_and_refuses_broken_ones(catalog):
    from streams.audit.logcheck import _ENTRY_V1, parse_entry

    serde = Serde(catalog, BuiltinRegistry(catalog), TopicNames("x."))
    asyncio.run(serde.prepare())
    at = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
    for source, log_id in (("qi-audit", "qi.local/audit"), ("s" * 100, "l" * 200)):
        enc = EntryEncoder(framing.header(serde.schema_id("AuditEntryAppended")), source, log_id)
        for i, (cause, etype) in enumerate([(None, None), (str(uuid.uuid4()), "X"), (None, "T" * 300)]):
            v = enc.encode(str(uuid.uuid4()), at, cause, i * 10**9, bytes(range(32)), "qi.readings.v1" * (1 + 9 * i),
                           70_000 * i, 2**45 * i, cause, etype)
            r = serde.decode(v, plain=True).record
            assert list(r) == _ENTRY_V1
            assert parse_entry(v) == (r["log_id"].encode(), r["leaf_index"], r["leaf_hash"],
                                      r["source_topic"].encode(), r["source_partition"], r["source_offset"])
            for cut in range(6, len(v)):
                with pytest.raises((ValueError, IndexError)):
                    parse_entry(v[:cut])
            with pytest.raises(ValueError):
                parse_entry(v + b"\x00")


def test_the_entry_matcher_reads_what_parse_entry_reads_and_nothing_else(catalog):
    """verify's regular expression: the same six fields as parse_entry for the writer's values, and
    no match (so parse_entry or the serde decide) for every cut, extension or unlearned literal."""
    from events.avro_binary import encode_long
    from streams.audit.logcheck import _EntryMatcher, _zigzag, parse_entry

    serde = Serde(catalog, BuiltinRegistry(catalog), TopicNames("x."))
    asyncio.run(serde.prepare())
    sid = serde.schema_id("AuditEntryAppended")
    at = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
    log_id = "qi.local/audit"
    m = _EntryMatcher(log_id, ["qi.readings.v1"])
    enc = EntryEncoder(framing.header(sid), "qi-audit", log_id)
    cases = [(None, None, 0, 0, 0), (str(uuid.uuid4()), "SensorReading", 63, 5, 64),
             (str(uuid.uuid4()), "SensorReading", 8191, 70_000, 8192), (None, "X" * 300, 2**20, 1, 2**45),
             (None, None, 10**9, 2**31 - 1, 2**62)]
    values = [enc.encode(str(uuid.uuid4()), at, cause, i, bytes(range(i % 7, i % 7 + 32)), "qi.readings.v1",
                         p, off, cause, etype) for cause, etype, i, p, off in cases]
    assert m.fullmatch(values[0]) is None  # nothing learned yet
    for v in values:
        m.learn(sid, serde.decode(v, plain=True).record)
    for v in values:
        g = m.fullmatch(v)
        assert g is not None
        ib, lh, key, ob = g.groups()
        lid, idx, want_lh, topic, part, off = parse_entry(v)
        assert (lid, _zigzag(ib), lh, _zigzag(ob)) == (log_id.encode(), idx, want_lh, off)
        assert key == encode_long(len(topic)) + topic + encode_long(part)  # one key per source partition
        for cut in range(len(v)):
            assert m.fullmatch(v[:cut]) is None
        assert m.fullmatch(v + b"\x00") is None
    # another log, another topic, another schema id: no match
    other = EntryEncoder(framing.header(sid), "qi-audit", "qi.local/other").encode(
        str(uuid.uuid4()), at, None, 1, bytes(32), "qi.readings.v1", 0, 1, None, None)
    assert m.fullmatch(other) is None
    elsewhere = enc.encode(str(uuid.uuid4()), at, None, 1, bytes(32), "qi.twins.v1", 0, 1, None, None)
    assert m.fullmatch(elsewhere) is None
    assert m.fullmatch(framing.header(sid + 1) + values[0][5:]) is None
    short_hash = enc.encode(str(uuid.uuid4()), at, None, 1, bytes(31), "qi.readings.v1", 0, 1, None, None)
    assert m.fullmatch(short_hash) is None and parse_entry(short_hash)[2] == bytes(31)
    for b in (b"\x00", b"\x7e", b"\x80\x01", b"\xff\x7f", b"\x81\x80\x01", b"\xff\xff\xff\x0f", b"\x81\x80\x80\x80\x01"):
        x = sum((c & 0x7F) << (7 * k) for k, c in enumerate(b))
        assert _zigzag(b) == (x >> 1) ^ -(x & 1)


def test_the_envelope_is_the_event_type_and_id_only(catalog):
    from events.errors import NotFramedError, UnknownSchemaError
    from tests.streams.helpers import readings

    serde = Serde(catalog, BuiltinRegistry(catalog), TopicNames("x."))
    asyncio.run(serde.prepare())
    ev = readings(1)[0]
    v = serde.encode_event(ev)
    d = serde.decode_envelope(v)
    assert (d.event_type, d.record) == ("SensorReading", {"event_id": str(ev.event_id)})
    assert serde.decode_envelope(v[:5] + b"\x02x" + v[7:]).record == {}  # first field not a UUID: no id
    assert serde.decode_envelope(v[:-3]).record == {"event_id": str(ev.event_id)}  # the body is not checked
    with pytest.raises(NotFramedError):
        serde.decode_envelope(b"\x01" + v[1:])
    with pytest.raises(UnknownSchemaError):
        serde.decode_envelope(framing.header(9999) + v[5:])


def test_copy_text_escapes_and_nulls():
    from streams.audit.store import entries_copy_text

    text = entries_copy_text("a\tb\\c", [(3, "qi.t", 1, 9, None, None, b"\x01" * 32),
                                         (4, "qi.t", 1, 10, str(uuid.UUID(int=1)), "T", b"\x02" * 32)],
                             datetime(2026, 1, 1, tzinfo=UTC))
    lines = text.splitlines()
    assert lines[0] == "a\\tb\\\\c\t3\tqi.t\t1\t9\t\\N\t\\N\t\\\\x" + "01" * 32 + "\t2026-01-01T00:00:00+00:00"
    assert lines[1].split("\t")[5:7] == [str(uuid.UUID(int=1)), "T"]


def test_encode_rows_writes_what_encode_writes(catalog):
    from streams.audit.writer import LeafEventIds

    serde = Serde(catalog, BuiltinRegistry(catalog), TopicNames("x."))
    asyncio.run(serde.prepare())
    at = datetime(2026, 11, 23, 21, 0, 1, 999999, tzinfo=UTC)
    enc = EntryEncoder(framing.header(serde.schema_id("AuditEntryAppended")), "qi-audit", "qi.local/audit")
    ids = LeafEventIds("qi.local/audit")
    canonical = {("x.qi.readings.v1", 5): "qi.readings.v1", ("x.qi.twins.v1", 70000): "qi.twins.v1"}
    rows = [(i, t, p, o, e, et, bytes([i % 256]) * 32) for i, (t, p, o, e, et) in enumerate([
        ("x.qi.readings.v1", 5, 0, None, None), ("x.qi.readings.v1", 5, 8191, str(uuid.uuid4()), "SensorReading"),
        ("x.qi.twins.v1", 70000, 2**31, "abc", "TwinRegistered"), ("x.qi.twins.v1", 70000, 2**40, None, "X"),
    ])] + [(8191, "x.qi.readings.v1", 5, 9, None, None, b"h" * 32), (2**30, "x.qi.readings.v1", 5, 10, None, None,
                                                                     b"h" * 32)]
    got = enc.encode_rows(rows, at, ids, canonical)
    want = [enc.encode(ids(i), at, e, i, lh, canonical[(t, p)], p, o, e, et) for i, t, p, o, e, et, lh in rows]
    assert got == want


def test_compact_range_extend_is_append_leaf_by_leaf():
    from streams.audit.compact import CompactRange

    leaves = [i.to_bytes(4, "big") * 8 for i in range(70000)]
    a, b = CompactRange(), CompactRange()
    ca: list = []
    cb: list = []
    for leaf in leaves[:300]:
        a.append(leaf, ca)
    for leaf in leaves[300:]:
        a.append(leaf, ca)
    b.extend(leaves[:300], cb)
    b.extend(leaves[300:], cb)
    assert (a.size, a.hashes, a.root()) == (b.size, b.hashes, b.root()) and ca == cb
    c = CompactRange()
    cc: list = []
    c.extend(leaves[:300], cc, note_leaves=False)
    c.extend(leaves[300:], cc, note_leaves=False)
    assert (c.size, c.hashes) == (a.size, a.hashes) and cc == [n for n in ca if n[0]]  # all but the leaves


def test_tiles_add_leaves_is_add_of_the_leaves():
    from streams.audit.tiles import TileBuilder

    leaves = [i.to_bytes(4, "big") * 8 for i in range(1000)]
    a, b = TileBuilder(), TileBuilder()
    for start, end in ((0, 3), (3, 256), (256, 700), (700, 1000)):
        a.add([(0, i, leaves[i]) for i in range(start, end)])
        b.add_leaves(start, leaves[start:end])
        assert a.take_dirty() == b.take_dirty()
    with pytest.raises(ValueError):
        b.add_leaves(5, leaves[:1])  # not the next leaf


def test_prepare_builds_the_copy_text_of_its_rows(catalog):
    from events.models import SensorReading
    from events.signing import HybridKeyPair
    from streams.audit.compact import CompactRange
    from streams.audit.store import entries_copy_text
    from streams.audit.tiles import TileBuilder
    from streams.audit.writer import AuditWriter
    from tests.streams.audit.helpers import Rec

    serde = Serde(catalog, BuiltinRegistry(catalog), TopicNames("p."))
    asyncio.run(serde.prepare())
    ev = [SensorReading(event_id=uuid.UUID(int=i), occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
                        recorded_at=datetime(2026, 1, 1, tzinfo=UTC), source="t", twin_id="tw", sensor_id="s",
                        quantity="q", value=1.0, unit="u") for i in range(30)]
    values = [serde.encode_event(e) for e in ev]
    recs = [Rec("p.qi.readings.v1", i % 3, i // 3, b"k", v, serde.decode_envelope(v)) for i, v in enumerate(values)]
    recs += [Rec("p.qi.t\\w\tx", 0, 0, None, b"v", None)]  # escaped topic, no decoded envelope
    w = AuditWriter(None, HybridKeyPair.generate(key_id="t/1"), serde, TopicNames("p."),  # type: ignore[arg-type]
                    log_id="t.local/c\tid", head_every_entries=1000, head_every_s=1e9)
    w._encoder = w._entry_encoder()
    at = datetime(2026, 3, 4, 5, 6, 7, 89, tzinfo=UTC)
    for checked in (False, True):
        w._set_tip(CompactRange(), TileBuilder(), {}, float("inf"))
        p = w.prepare(recs[:-1] if checked else recs, now=at, ids_checked=checked)
        c = p.commit
        assert c.copy_text == entries_copy_text(w.log_id, c.entries, at)
        assert sum(r[4] is not None for r in c.entries) == 30


def test_prepare_takes_records_in_source_order_whatever_order_they_come_in(catalog):
    import random

    from events.signing import HybridKeyPair
    from streams.audit.compact import CompactRange
    from streams.audit.tiles import TileBuilder
    from streams.audit.writer import AuditWriter
    from tests.streams.audit.helpers import Rec

    serde = Serde(catalog, BuiltinRegistry(catalog), TopicNames(""))
    asyncio.run(serde.prepare())
    kp = HybridKeyPair.generate(key_id="t/1")
    recs = [Rec(t, p, o, b"k", b"%s%d%d" % (t.encode(), p, o)) for t in ("qi.twins.v1", "qi.readings.v1")
            for p in (0, 3, 1) for o in range(40)]
    recs += recs[5:30]  # redelivered within the batch
    now = datetime(2026, 1, 1, tzinfo=UTC)

    def prepared(records):
        w = AuditWriter(None, kp, serde, TopicNames(""), log_id="t.local/o", head_every_entries=7,  # type: ignore
                        head_every_s=1e9)
        w._encoder = w._entry_encoder()
        w._cr, w._tiles, w._positions = CompactRange(), TileBuilder(), {("qi.twins.v1", 0): 3}
        w._last_head_mono = 0.0
        w._set_tip(w._cr, w._tiles, w._positions, float("inf"))
        p = w.prepare(records, now=now)
        return (p.commit.entries, p.commit.compact, p.commit.tiles, p.commit.positions,
                [(h.tree_size, h.root) for h in p.commit.heads], [o.value for o in p.outputs if o.event_id is None])

    want = prepared(sorted(recs, key=lambda r: (r.topic, r.partition, r.offset)))
    shuffled = list(recs)
    random.Random(4).shuffle(shuffled)
    assert prepared(shuffled) == want
    rows = want[0]
    assert [r[0] for r in rows] == list(range(len(rows))) and len(rows) == 6 * 40 - 3
    assert [(r[1], r[2], r[3]) for r in rows] == sorted((r[1], r[2], r[3]) for r in rows)
    assert len(want[4]) == len(rows) // 7


def test_encode_rows_of_contiguous_leaves_and_the_batch_leaf_hashes(catalog):
    from dataclasses import dataclass

    from streams.audit.hashing import partition_leaf_hashes, record_leaf_hash
    from streams.audit.writer import LeafEventIds

    serde = Serde(catalog, BuiltinRegistry(catalog), TopicNames(""))
    asyncio.run(serde.prepare())
    at = datetime(2026, 11, 23, tzinfo=UTC)
    enc = EntryEncoder(framing.header(serde.schema_id("AuditEntryAppended")), "qi-audit", "qi.local/audit")
    ids = LeafEventIds("qi.local/audit")
    rows = [(i, "qi.readings.v1", 1, i * 3, str(uuid.UUID(int=i)) if i % 2 else None, "SensorReading", b"\7" * 32)
            for i in range(8000, 8400)]
    got = enc.encode_rows(rows, at, ids, {("qi.readings.v1", 1): "qi.readings.v1"})
    assert got == [enc.encode(ids(i), at, e, i, lh, t, p, o, e, et) for i, t, p, o, e, et, lh in rows]

    @dataclass
    class R:
        offset: int
        key: bytes | None
        value: bytes

    recs = [R(o, None if o % 3 == 0 else b"k%d" % o, b"v" * o) for o in range(50)]
    assert partition_leaf_hashes("qi.twins.v1", 7, recs) == [
        record_leaf_hash("qi.twins.v1", 7, r.offset, r.key, r.value) for r in recs]
