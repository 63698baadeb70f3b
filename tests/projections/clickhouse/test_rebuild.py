"""Blue/green rebuild of the warehouse: replay the log into a fresh database while the live one keeps
answering queries; the rebuilt one equals the live one row for row; promoting it swaps the tables."""

from __future__ import annotations

import asyncio

import pytest

from projections.clickhouse.migrations import FACT_TABLES
from projections.clickhouse.projector import ClickHouseProjector
from tests.projections.clickhouse.world import mixed_events
from tests.streams.helpers import running, wait_for

pytestmark = pytest.mark.stack


def _dump(wh) -> dict[str, list]:
    out = {t: sorted(map(tuple, wh.query(f"SELECT * FROM {t} FINAL").result_rows), key=repr) for t in FACT_TABLES}
    out["positions"] = sorted(wh.positions().items())
    return out


def test_rebuild_equals_live_and_promotes_atomically_per_table(platform, warehouse) -> None:
    events = mixed_events(4000, seed=41)
    fresh = platform.warehouse(database=warehouse.database + "_next")

    async def go() -> tuple[dict, list[int], dict]:
        await platform.ensure_topics()
        serde = await platform.serde()
        async with platform.publisher(serde) as pub:
            await pub.publish_many(events)
        async with running(platform, ClickHouseProjector(warehouse)):
            await wait_for(lambda: warehouse.query("SELECT count() FROM events FINAL").result_rows[0][0]
                           >= len(events), timeout_s=60)
        warehouse.start()
        live = _dump(warehouse)
        served = []
        rebuild = ClickHouseProjector(fresh, batch_rows=1000)
        rebuild.name = "rebuild-clickhouse"  # its own consumer group, from the beginning
        async with running(platform, rebuild):
            # connected and past the migration that makes `events` (start() connects, then migrates)
            await wait_for(lambda: fresh._client is not None and fresh.client.query(
                "SELECT count() FROM system.tables WHERE database = {db:String} AND name = 'events'",
                parameters={"db": fresh.database}).result_rows[0][0] == 1, timeout_s=30)
            while True:  # the live one first: at least one answer while the rebuild runs, however fast
                served.append(warehouse.query("SELECT count() FROM events FINAL").result_rows[0][0])
                if fresh.query("SELECT count() FROM events FINAL").result_rows[0][0] >= len(events):
                    break
                await asyncio.sleep(0.05)
        fresh.start()
        return live, served, _dump(fresh)

    live, served, rebuilt = asyncio.run(go())
    assert served and set(served) == {len(events)}  # the live warehouse answered throughout
    assert rebuilt == live  # row for row, positions included
    old = fresh.promote(warehouse.database)
    try:
        assert old == warehouse.database + "__old"
        assert _dump(fresh) == live
        names = {r[0] for r in fresh.query(f"SELECT name FROM system.tables WHERE database = '{old}'").result_rows}
        assert set(FACT_TABLES) <= names  # the old tables are kept until dropped
    finally:
        fresh.query("SELECT 1")
        fresh.client.command(f"DROP DATABASE IF EXISTS {old}")
        fresh.close()
