"""`qi projections rebuild warehouse` on the embedded default: the worker that owns the chDB directory
rebuilds inside itself (its control endpoint); the result equals the live warehouse row for row under
FINAL, `qi sql` keeps answering during the rebuild, the old tables are dropped, and the live projector
goes on writing into the swapped-in tables."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import httpx
import pytest

from projections.clickhouse.migrations import FACT_TABLES
from projections.clickhouse.query import announce_path, run_via
from tests.conftest import ROOT
from tests.projections.clickhouse.procs import qi_sql, sql_rows, start_projector, stop, wait_until, warehouse_env
from tests.projections.clickhouse.world import mixed_events

pytestmark = pytest.mark.stack


def _dump(url: str) -> dict[str, list]:
    """Every fact table under FINAL, sorted, plus the stored positions (through the owner's endpoint)."""
    out = {t: sorted((tuple(r) for r in run_via(url, "qi", f"SELECT * FROM {t} FINAL").rows), key=repr)
           for t in FACT_TABLES}
    out["positions"] = sorted(tuple(r) for r in run_via(url, "qi", "SELECT topic, partition, max(next_offset) "
                                                        "FROM projection_positions GROUP BY topic, partition").rows)
    return out


def _uuids(url: str) -> dict[str, str]:
    rows = run_via(url, "qi", "SELECT name, toString(uuid) FROM system.tables WHERE database = 'qi'").rows
    return {name: uid for name, uid in rows}


def test_rebuild_runs_in_the_owner_and_swaps_in_an_equal_warehouse(platform, stack_env, topic_prefix,
                                                                     tmp_path) -> None:
    events = mixed_events(6000, seed=43)
    first, later = events[:5000], events[5000:]

    async def publish(evs) -> None:
        await platform.ensure_topics()
        serde = await platform.serde()
        async with platform.publisher(serde) as pub:
            await pub.publish_many(evs)

    asyncio.run(publish(first))
    chdb_dir = tmp_path / "ch"
    env = warehouse_env(stack_env, prefix=topic_prefix, run_dir=tmp_path / "run", chdb_dir=chdb_dir)
    env["QI_CLICKHOUSE_BATCH_ROWS"] = "500"  # the rebuild takes many inserts: time for queries in between
    env["QI_RUNNER_MAX_BATCH"] = "500"
    proc = start_projector(env, tmp_path / "projector.log")
    try:
        announce = announce_path(tmp_path / "run", f"chdb://{chdb_dir}")
        wait_until(lambda: announce.exists(), timeout_s=60)
        url = json.loads(announce.read_text())["url"]

        def count() -> int:
            try:
                return run_via(url, "qi", "SELECT count() FROM events FINAL").rows[0][0]
            except Exception:  # noqa: BLE001 - tables not migrated yet
                return -1

        wait_until(lambda: count() == len(first), timeout_s=90)
        live = _dump(url)
        tables_before = _uuids(url)
        assert sum(len(v) for k, v in live.items() if k != "positions") > len(first)

        rebuild = subprocess.Popen([sys.executable, "-m", "qi", "projections", "rebuild", "warehouse"], cwd=ROOT,
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        answers, during = [], 0
        deadline = time.monotonic() + 150
        while rebuild.poll() is None:  # the live warehouse answers `qi sql` throughout
            assert time.monotonic() < deadline, "rebuild did not finish"
            status = httpx.get(f"{url}/rebuild", timeout=30).json()
            replaying = status["running"] and (status["progress"] or {}).get("phase") == "replaying"
            answers.append(sql_rows(env, "SELECT count() AS n FROM events FINAL")[0]["n"])
            during += replaying
        out, err = rebuild.communicate(timeout=30)
        assert rebuild.returncode == 0, err[-2000:]
        assert "rebuilt warehouse (clickhouse)" in out and "/s ETA" in err and "swapped" in err
        assert during >= 1 and set(answers) == {len(first)}  # answered while replaying, always complete

        rebuilt = _dump(url)
        assert rebuilt == live  # row for row under FINAL, positions included
        tables_after = _uuids(url)
        assert set(FACT_TABLES) <= set(tables_after)
        assert all(tables_after[t] != tables_before[t] for t in FACT_TABLES)  # new tables, swapped in
        dbs = {r[0] for r in run_via(url, "qi", "SELECT name FROM system.databases").rows}
        assert not any(d.startswith("qi__") for d in dbs), dbs  # the old tables and the fresh db are gone
        status = httpx.get(f"{url}/rebuild", timeout=30).json()
        assert status["result"]["dropped"] == "qi__old" and status["error"] is None

        # the live projector follows the swap: later events land in the new tables
        asyncio.run(publish(later))
        wait_until(lambda: count() == len(events), timeout_s=90)
        ids = {r["event_id"] for r in sql_rows(env, "SELECT event_id FROM events FINAL")}
        assert ids == {str(e.event_id) for e in events}
        assert qi_sql(env, "SELECT count() FROM events").returncode == 0
    finally:
        assert stop(proc) == 0
