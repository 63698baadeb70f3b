"""`qi sql` while the projector holds the embedded chDB directory (and after it stopped)."""

from __future__ import annotations

import json

import pytest

from projections.clickhouse.query import announce_path
from tests.projections.clickhouse.procs import (publish_events, qi_sql, sql_rows, start_projector, stop, wait_until,
                                               warehouse_env)
from tests.projections.clickhouse.world import mixed_events

pytestmark = pytest.mark.stack


def test_qi_sql_goes_through_the_running_projector(platform, stack_env, topic_prefix, tmp_path) -> None:
    events = mixed_events(1200, seed=11)
    readings = sum(e.event_type == "SensorReading" for e in events)

    publish_events(platform, events)
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


def test_the_owner_answers_queries_side_by_side_in_the_engines_own_format(platform, stack_env, topic_prefix,
                                                                          tmp_path) -> None:
    """Decision 0067: several read-only handles answer at once (two 1 s sleeps take ~1 s, not 2), each
    query with its own parameters (no mix-up between concurrent handles), in the engine's own output
    format passed through as bytes, while the projector keeps writing exactly once."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    events = mixed_events(3000, seed=12)
    readings = sum(e.event_type == "SensorReading" for e in events)

    publish_events(platform, events)
    chdb_dir = tmp_path / "ch"
    env = warehouse_env(stack_env, prefix=topic_prefix, run_dir=tmp_path / "run", chdb_dir=chdb_dir)
    env["QI_CLICKHOUSE_READERS"] = "3"
    proc = start_projector(env, tmp_path / "projector.log")
    try:
        announce = announce_path(tmp_path / "run", f"chdb://{chdb_dir}")
        wait_until(lambda: announce.exists(), timeout_s=60)
        url = json.loads(announce.read_text())["url"] + "/sql"

        def post(body: dict) -> httpx.Response:
            return httpx.post(url, json=body, timeout=60)

        def raw(k: int) -> tuple[int, bytes]:
            r = post({"sql": "SELECT {k:UInt32} AS k, {s:String} AS s, count() >= 0 AS ok FROM readings",
                      "parameters": {"k": k, "s": f"q{k}"}, "format": "JSONEachRow"})
            return r.status_code, r.content

        def caught_up() -> bool:
            r = post({"sql": "SELECT count() AS n FROM events FINAL"})
            return r.status_code == 200 and r.json()["rows"][0][0] == len(events)

        wait_until(lambda: post({"sql": "SELECT 1 FROM readings LIMIT 1"}).status_code == 200, timeout_s=60)
        with ThreadPoolExecutor(12) as pool:  # while the projector is still writing
            answers = list(pool.map(raw, range(120)))
        for k, (status, body) in enumerate(answers):
            assert status == 200, body[:300]
            assert json.loads(body) == {"k": k, "s": f"q{k}", "ok": True}  # one JSON object, its own parameters
        with ThreadPoolExecutor(2) as pool:
            t0 = time.monotonic()
            sleeps = list(pool.map(lambda _: post({"sql": "SELECT sleep(1) AS z", "format": "CSV"}), range(2)))
            took = time.monotonic() - t0
        assert [s.status_code for s in sleeps] == [200, 200] and [s.content for s in sleeps] == [b"0\n", b"0\n"]
        assert took < 1.8, f"two 1 s queries took {took:.2f} s: they ran one at a time"
        bad_format = post({"sql": "SELECT 1", "format": "Pretty"})
        assert bad_format.status_code == 400 and "format must be one of" in bad_format.json()["error"]
        refused = post({"sql": "INSERT INTO readings (twin_id) VALUES ('x')", "format": "JSONEachRow"})
        assert refused.status_code == 400 and "readonly" in refused.json()["error"].lower()
        wait_until(caught_up, timeout_s=90)
        assert proc.poll() is None
        assert sql_rows(env, "SELECT count() AS n FROM readings FINAL")[0]["n"] == readings
    finally:
        assert stop(proc) == 0
