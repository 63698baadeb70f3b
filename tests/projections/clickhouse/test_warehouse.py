"""The warehouse writer on the real chDB engine: migrations, idempotent batches, positions."""

from __future__ import annotations

import asyncio
import random

import pytest

from projections.clickhouse.errors import QueryError
from projections.clickhouse.migrations import FACT_TABLES, MIGRATIONS
from projections.clickhouse.projector import ClickHouseProjector
from projections.clickhouse.rows import batch_of
from tests.projections.clickhouse.conftest import consumed, offline_serde
from tests.projections.clickhouse.world import mixed_events
from tests.streams.helpers import running, wait_for

pytestmark = pytest.mark.stack


def _counts(wh, *, final: bool) -> dict[str, int]:
    f = " FINAL" if final else ""
    return {t: wh.query(f"SELECT count() FROM {t}{f}").result_rows[0][0] for t in FACT_TABLES}


def _expected(events) -> dict[str, int]:
    types = [e.event_type for e in events]
    return {
        "events": len(events),
        "readings": types.count("SensorReading"),
        "scores": types.count("AnomalyScored"),
        "alerts": types.count("AnomalyDetected"),
        "certificate_history": sum(t.startswith("Certificate") for t in types),
    }


def test_migrations_apply_once_and_are_recorded(warehouse) -> None:
    assert warehouse.migrate() == []  # start() applied them already
    rows = warehouse.query("SELECT version, name FROM schema_migrations FINAL ORDER BY version").result_rows
    assert [r[0] for r in rows] == [m.version for m in MIGRATIONS]
    tables = {r[0] for r in warehouse.query("SHOW TABLES").result_rows}
    assert set(FACT_TABLES) | {"projection_positions", "schema_migrations"} <= tables
    engine = warehouse.query("SELECT engine, sorting_key FROM system.tables WHERE database = currentDatabase() "
                             "AND name = 'readings'").result_rows[0]
    assert engine == ("ReplacingMergeTree", "twin_id, sensor_id, occurred_at, event_id")


def test_redelivered_batches_leave_one_row_per_event(warehouse, catalog) -> None:
    events = mixed_events(3000, seed=3)
    recs = consumed(asyncio.run(offline_serde(catalog)), events)
    for i in range(0, len(recs), 700):  # first delivery
        warehouse.write(batch_of(recs[i:i + 700]))
    before = _counts(warehouse, final=False)
    warehouse.write(batch_of(recs[0:700]))  # the same batch again: its dedup token drops it
    assert _counts(warehouse, final=False) == before
    rnd = random.Random(5)
    i = 0
    while i < len(recs):  # everything again, cut differently (a crash changes the batch boundaries)
        n = rnd.randint(50, 900)
        warehouse.write(batch_of(recs[i:i + n]))
        i += n
    assert _counts(warehouse, final=False)["events"] > len(events)  # duplicates were stored...
    assert _counts(warehouse, final=True) == _expected(events)  # ...and collapse to one row per event
    ids = warehouse.query("SELECT count(DISTINCT event_id) FROM events").result_rows[0][0]
    assert ids == len({e.event_id for e in events})


def test_positions_are_the_highest_applied(warehouse, catalog) -> None:
    recs = consumed(asyncio.run(offline_serde(catalog)), mixed_events(400, seed=4))
    warehouse.write(batch_of(recs[:300]))
    warehouse.write(batch_of(recs[:100]))  # a stale redelivery does not move positions back
    expected: dict[tuple[str, int], int] = {}
    for r in recs[:300]:
        expected[(r.topic, r.partition)] = r.offset + 1
    assert warehouse.positions() == expected


def test_refused_query_is_a_typed_error(warehouse) -> None:
    with pytest.raises(QueryError) as e:
        warehouse.query("SELECT * FROM no_such_table")
    assert e.value.code == 60  # UNKNOWN_TABLE


def test_projector_on_the_runner_resumes_from_its_stored_positions(platform, warehouse) -> None:
    async def go() -> None:
        events = mixed_events(2500, seed=6)
        await platform.ensure_topics()
        serde = await platform.serde()
        async with platform.publisher(serde) as pub:
            await pub.publish_many(events[:1500])
        async with running(platform, ClickHouseProjector(warehouse)):
            await wait_for(lambda: _counts(warehouse, final=True)["events"] >= 1500, timeout_s=60)
        warehouse.start()  # the projector closed it on stop; open it again to look
        stored = warehouse.positions()
        assert sum(stored.values()) == 1500
        async with platform.publisher(serde) as pub:
            await pub.publish_many(events[1500:])
        projector = ClickHouseProjector(warehouse)
        async with running(platform, projector):
            await wait_for(lambda: _counts(warehouse, final=True)["events"] >= len(events), timeout_s=60)
        warehouse.start()
        assert projector.rows_written >= 1000  # the second run wrote only the new events' rows
        assert _counts(warehouse, final=True) == _expected(events)

    asyncio.run(go())


def test_projector_buffer_is_written_exactly_when_due_without_another_fetch(warehouse, catalog) -> None:
    recs = consumed(asyncio.run(offline_serde(catalog)), mixed_events(300, seed=7))

    async def go() -> None:
        projector = ClickHouseProjector(warehouse, batch_rows=10**6, batch_max_delay_ms=300)
        loop = asyncio.get_running_loop()
        t = loop.time()
        await projector.process(recs)
        # no await between process and here: the event loop cannot have run the timer yet
        assert _counts(warehouse, final=False)["events"] == 0
        due = projector._due
        assert due is not None and t + 0.3 <= due.when() <= loop.time() + 0.3  # due then, not a tick later
        await wait_for(lambda: _counts(warehouse, final=True)["events"] == len(recs), timeout_s=30, every_s=0.05)
        await projector.drain()
        assert projector.rows_written == sum(_counts(warehouse, final=True).values())

    asyncio.run(go())


def test_projector_writes_its_buffer_once_the_runner_caught_up(warehouse, catalog) -> None:
    recs = consumed(asyncio.run(offline_serde(catalog)), mixed_events(300, seed=8))

    async def go() -> None:
        # neither the size nor the delay would write this buffer during the test
        projector = ClickHouseProjector(warehouse, batch_rows=10**6, batch_max_delay_ms=600_000)
        await projector.process(recs[:200])
        await projector.process(recs[200:])
        assert _counts(warehouse, final=False)["events"] == 0
        await projector.caught_up()
        expected = batch_of(recs).positions  # stored after the rows: once there, the whole write is
        await wait_for(lambda: warehouse.positions() == expected, timeout_s=30, every_s=0.05)
        assert _counts(warehouse, final=True)["events"] == len(recs)
        await projector.close()

    asyncio.run(go())


def test_runner_tells_the_projector_when_it_reached_the_log_end(platform, warehouse) -> None:
    """On the runner, events arriving at a live projector are written without waiting for the
    buffer's size or delay: the runner's caught_up() after the fetch that reached the log end."""
    async def go() -> None:
        events = mixed_events(800, seed=9)
        await platform.ensure_topics()
        serde = await platform.serde()
        projector = ClickHouseProjector(warehouse, batch_rows=10**6, batch_max_delay_ms=600_000)
        async with running(platform, projector) as runner:
            await wait_for(lambda: runner.health()["joined"], timeout_s=60)
            async with platform.publisher(serde) as pub:
                await pub.publish_many(events)
            await wait_for(lambda: _counts(warehouse, final=True)["events"] >= len(events), timeout_s=60)
        warehouse.start()
        assert _counts(warehouse, final=True) == _expected(events)

    asyncio.run(go())
