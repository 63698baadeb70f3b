"""`qi sql` while the projector holds the embedded chDB directory (and after it stopped)."""

from __future__ import annotations

import asyncio
import json

import pytest

from projections.clickhouse.query import announce_path
from tests.projections.clickhouse.procs import qi_sql, sql_rows, start_projector, stop, wait_until, warehouse_env
from tests.projections.clickhouse.world import mixed_events

pytestmark = pytest.mark.stack


def test_qi_sql_goes_through_the_running_projector(platform, stack_env, topic_prefix, tmp_path) -> None:
    events = mixed_events(1200, seed=11)
    readings = sum(e.event_type == "SensorReading" for e in events)

    async def publish() -> None:
        await platform.ensure_topics()
        serde = await platform.serde()
        async with platform.publisher(serde) as pub:
            await pub.publish_many(events)

    asyncio.run(publish())
    chdb_dir = tmp_path / "ch"
    env = warehouse_env(stack_env, prefix=topic_prefix, run_dir=tmp_path / "run", chdb_dir=chdb_dir)
    proc = start_projector(env, tmp_path / "projector.log")
    try:
        announce = announce_path(tmp_path / "run", f"chdb://{chdb_dir}")
        wait_until(lambda: announce.exists(), timeout_s=60)
        assert json.loads(announce.read_text())["pid"] == proc.pid

        def caught_up():
            try:
                return sql_rows(env, "SELECT count() AS n FROM events FINAL")[0]["n"] == len(events)
            except AssertionError:  # tables not migrated yet
                return False

        wait_until(caught_up, timeout_s=90)
        assert proc.poll() is None  # the projector still owns the engine: the query went through it
        table = qi_sql(env, "SELECT event_type, count() AS n FROM events FINAL GROUP BY event_type "
                            "ORDER BY event_type", fmt="table").stdout
        assert "SensorReading" in table and str(readings) in table and "rows)" in table
        csv_out = qi_sql(env, "SELECT twin_id, count() AS n FROM readings FINAL GROUP BY twin_id "
                              "ORDER BY twin_id LIMIT 2", fmt="csv").stdout.splitlines()
        assert csv_out[0] == "twin_id,n" and csv_out[1].startswith("tw-0,")
        refused = qi_sql(env, "INSERT INTO readings (twin_id) VALUES ('x')", check=False)
        assert refused.returncode == 2 and "readonly" in refused.stderr.lower()
        bad = qi_sql(env, "SELEC nonsense", check=False)
        assert bad.returncode == 2 and "error" in bad.stderr
        # without the announcement, qi sql would have to open the engine itself: the owner blocks that
        hidden = announce.with_name("hidden.json")
        announce.rename(hidden)
        try:
            blocked = qi_sql(env, "SELECT 1", check=False)
        finally:
            hidden.rename(announce)
        assert blocked.returncode == 2 and "holds this chDB directory" in blocked.stderr
    finally:
        assert stop(proc) == 0
    # with nobody holding the directory, qi sql opens the engine itself
    assert not announce.exists()
    assert sql_rows(env, "SELECT count() AS n FROM readings FINAL")[0]["n"] == readings
