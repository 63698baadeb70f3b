"""Crash test: the ClickHouse projector is SIGKILLed at random points while it consumes
50,000+ mixed events, restarted until it catches up; then every table holds exactly one row per
event of its kind (0 missing, 0 duplicated under FINAL) with the events' values."""

from __future__ import annotations

import json
import random
import signal
import time

import pytest

from tests.projections.clickhouse.procs import publish_events, sql_rows, start_projector, stop, wait_until, warehouse_env
from tests.projections.clickhouse.world import mixed_events

pytestmark = pytest.mark.stack

KILLS = 4


def _log_has(path, text: str, since: int) -> bool:
    return text in path.read_text(errors="replace")[since:]


def test_sigkilled_projector_catches_up_with_exactly_one_row_per_event(platform, stack_env, topic_prefix,
                                                                        tmp_path) -> None:
    events = mixed_events(52_000, seed=31, twins=50)
    types = [e.event_type for e in events]
    assert len(events) >= 50_000 and len(set(types)) >= 8

    publish_events(platform, events)
    env = warehouse_env(stack_env, prefix=topic_prefix, run_dir=tmp_path / "run", chdb_dir=tmp_path / "ch")
    env["QI_RUNNER_MAX_BATCH"] = "2000"  # more batches and inserts: more places for a kill to land
    env["QI_CLICKHOUSE_BATCH_ROWS"] = "3000"
    log = tmp_path / "projector.log"
    log.touch()
    rnd = random.Random(7)
    for _ in range(KILLS):
        mark = len(log.read_text(errors="replace"))
        proc = start_projector(env, log)
        try:
            wait_until(lambda: _log_has(log, "runner.assigned", mark), timeout_s=60, every_s=0.05)
            time.sleep(rnd.uniform(0.2, 2.5))  # somewhere inside consuming / writing / committing
        finally:
            assert stop(proc, signal.SIGKILL) == -signal.SIGKILL
    # the last run catches up and keeps running; qi sql asks it through its endpoint
    proc = start_projector(env, log)
    try:
        def n_events():
            try:
                return sql_rows(env, "SELECT count() AS n FROM events FINAL")[0]["n"]
            except AssertionError:
                return -1

        wait_until(lambda: n_events() == len(events), timeout_s=120, every_s=1.0)
        totals = sql_rows(env, "SELECT (SELECT count() FROM events) AS stored, "
                               "(SELECT count() FROM events FINAL) AS final, "
                               "(SELECT uniqExact(event_id) FROM events) AS distinct_ids")[0]
        stored_ids = {r["event_id"] for r in sql_rows(env, "SELECT event_id FROM events FINAL")}
        readings = {r["event_id"]: r["value"] for r in sql_rows(env, "SELECT event_id, value FROM readings FINAL")}
        per_table = sql_rows(env, "SELECT (SELECT count() FROM readings FINAL) AS readings, "
                                  "(SELECT count() FROM scores FINAL) AS scores, "
                                  "(SELECT count() FROM alerts FINAL) AS alerts, "
                                  "(SELECT count() FROM certificate_history FINAL) AS certificate_history")[0]
        by_type = {r["event_type"]: r["n"] for r in sql_rows(
            env, "SELECT event_type, count() AS n FROM events FINAL GROUP BY event_type")}
        positions = sql_rows(env, "SELECT sum(o) AS total FROM (SELECT max(next_offset) AS o "
                                  "FROM projection_positions GROUP BY topic, partition)")[0]["total"]
    finally:
        assert stop(proc) == 0
    seeks = [json.loads(line)["seeks"] for line in log.read_text(errors="replace").splitlines()
             if '"runner.assigned"' in line]
    assert len(seeks) == KILLS + 1
    assert set(seeks[0].values()) == {0}  # the first run started from the beginning...
    assert sum(seeks[-1].values()) > 0  # ...the last one from the positions stored with the rows
    # 0 missing, 0 duplicated, values as published
    assert totals["final"] == totals["distinct_ids"] == len(events) <= totals["stored"]
    assert stored_ids == {str(e.event_id) for e in events}
    assert readings == {str(e.event_id): e.value for e in events if e.event_type == "SensorReading"}
    assert per_table == {"readings": types.count("SensorReading"), "scores": types.count("AnomalyScored"),
                         "alerts": types.count("AnomalyDetected"),
                         "certificate_history": sum(t.startswith("Certificate") for t in types)}
    assert by_type == {t: types.count(t) for t in set(types)}
    assert positions == len(events)  # the checkpoint points exactly past the last event
