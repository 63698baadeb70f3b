"""Events -> warehouse rows, without an engine."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from projections.clickhouse.rows import TABLE_COLUMNS, batch_of, micros
from tests.projections.clickhouse.conftest import consumed, offline_serde
from tests.projections.clickhouse.world import mixed_events


def test_micros_from_int_and_datetime() -> None:
    dt = datetime(2026, 10, 1, 0, 0, 1, 250, tzinfo=UTC)
    assert micros(dt) == 1_790_812_801_000_250
    assert micros(1_790_812_801_000_250) == 1_790_812_801_000_250


def test_every_event_gets_an_events_row_and_its_typed_row(catalog) -> None:
    events = mixed_events(600)
    recs = consumed(asyncio.run(offline_serde(catalog)), events)
    b = batch_of(recs)
    by_type: dict[str, int] = {}
    for e in events:
        by_type[e.event_type] = by_type.get(e.event_type, 0) + 1
    assert len(b.tables["events"]) == len(events)
    assert len(b.tables["readings"]) == by_type["SensorReading"]
    assert len(b.tables["scores"]) == by_type["AnomalyScored"]
    assert len(b.tables["alerts"]) == by_type.get("AnomalyDetected", 0) > 0
    certs = sum(v for k, v in by_type.items() if k.startswith("Certificate"))
    assert len(b.tables["certificate_history"]) == certs > 0
    for table, cols in b.tables.items():
        assert all(len(c) == len(cols) for c in cols.data), table
        assert cols.names == TABLE_COLUMNS[table]
    # an issued certificate carries its twin, issuer and validity; the events row its ids and position
    issued = next(e for e in events if e.event_type == "CertificateIssued")
    hist = b.tables["certificate_history"]
    i = hist.data[2].index(str(issued.event_id))
    row = dict(zip(hist.names, (c[i] for c in hist.data)))
    assert row["twin_id"] == issued.administrative.item.twin_id and row["issuer_id"] == "lab-1"
    assert row["valid_until"] == micros(issued.validity.valid_until)
    ev = b.tables["events"]
    j = ev.data[0].index(str(issued.event_id))
    erow = dict(zip(ev.names, (c[j] for c in ev.data)))
    assert erow["certificate_id"] == issued.certificate_id and erow["aggregate_id"] == issued.certificate_id
    assert erow["twin_id"] == issued.administrative.item.twin_id
    rec = next(r for r in recs if r.decoded.record["event_id"] == str(issued.event_id))
    assert (erow["topic"], erow["partition"], erow["offset"]) == (rec.topic, rec.partition, rec.offset)
    assert json.loads(erow["payload"])["certificate_kind"] == "calibration.pressure"
    table = ev.arrow()  # what the warehouse inserts: one Arrow column per table column
    assert table.column_names == list(ev.names) and table.num_rows == len(events)
    assert table.column("occurred_at")[j].value == erow["occurred_at"]


def test_positions_and_dedup_tokens_follow_the_offsets(catalog) -> None:
    recs = consumed(asyncio.run(offline_serde(catalog)), mixed_events(300))
    a, again, other = batch_of(recs[:100]), batch_of(recs[:100]), batch_of(recs[:99])
    assert a.dedup_token("readings") == again.dedup_token("readings")
    assert a.dedup_token("readings") != a.dedup_token("scores")
    assert a.dedup_token("readings") != other.dedup_token("readings")
    last = {}
    for r in recs[:100]:
        last[(r.topic, r.partition)] = r.offset + 1
    assert a.positions == last


def test_merged_and_per_record_batches_equal_one_batch_of_all(catalog) -> None:
    """Columns are kept per column (0058): merging fetches, or adding records one at a time, gives
    the same Arrow tables, positions and tokens as one batch of every record."""
    from projections.clickhouse.rows import WarehouseBatch

    recs = consumed(asyncio.run(offline_serde(catalog)), mixed_events(400, seed=11))
    whole = batch_of(recs)
    merged = batch_of(recs[:150])
    merged.merge(batch_of(recs[150:]))
    one_by_one = WarehouseBatch()
    for r in recs:
        d = r.decoded
        one_by_one.add(r.topic, r.partition, r.offset, r.key, d.event_type, d.schema_id, d.record)
    for b in (merged, one_by_one):
        assert b.positions == whole.positions
        for name, cols in whole.tables.items():
            assert b.tables[name].arrow().equals(cols.arrow()), name
            assert b.dedup_token(name) == whole.dedup_token(name)
    assert len(whole.tables["events"].rows) == len(recs)
