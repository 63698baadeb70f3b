"""Crash test: a projector subprocess is SIGKILLed at random points while it consumes 50,000+
mixed events (twins, issuers, certificates, validations, readings, scores), restarted until it
catches up; then its read model equals the state computed independently from the events:
0 missing, 0 duplicated (keys are primary keys / hash keys), no stale overwrite (every row holds
the values and version of the aggregate's newest event)."""

from __future__ import annotations

import asyncio
import random

import pytest

from tests.projections.harness import (
    PROJECTION_OF, diff, kill_repeatedly, log_has, projector_env, sink_positions, sink_snapshot, start_projector,
    stop, wait_until,
)
from tests.projections.world import expected, world

pytestmark = pytest.mark.stack

KILLS = 4


@pytest.mark.parametrize("kind", sorted(PROJECTION_OF))
def test_sigkilled_projector_ends_equal_to_the_log(kind, platform, stack_env, topic_prefix, tmp_path):
    projection = PROJECTION_OF[kind]
    events = world(62_000, seed=11, twins=300, firehose=0.1)
    mine = [e for e in events if e.TOPIC_FAMILY in projection.families]
    assert len(mine) >= 50_000 and {"SensorReading", "AnomalyScored", "CertificateValidated",
                                    "TwinAttributesChanged"} <= {e.event_type for e in events}

    async def publish():
        await platform.ensure_topics()
        serde = await platform.serde()
        async with platform.publisher(serde) as pub:
            await pub.publish_many(events)

    asyncio.run(publish())
    env = projector_env(stack_env, prefix=topic_prefix, run_dir=tmp_path / "run", QI_RUNNER_MAX_BATCH="2000")
    log = tmp_path / f"project-{kind}.log"
    log.touch()
    sink = lambda: platform.projection_sink(projection, kind)  # noqa: E731
    applied = lambda: sum(sink_positions(sink).values())  # noqa: E731
    progress = kill_repeatedly(env, kind, log, kills=KILLS, rnd=random.Random(17), progress=applied,
                               min_s=0.1, max_s=1.0)

    mark = log.stat().st_size
    proc = start_projector(env, kind, log)
    try:
        wait_until(lambda: applied() == len(mine), timeout_s=180, every_s=0.5)
        snap = sink_snapshot(sink)
    finally:
        assert stop(proc) == 0
    assert log_has(log, "runner.assigned", mark)
    want = expected(events, {t.name for t in projection.tables})
    assert diff(snap, want) == []
    assert sum(len(v) for v in snap.values()) == sum(len(v) for v in want.values())
    # kills interrupted runs in progress (otherwise nothing was tested), and runs resumed from
    # the stored positions (they kept advancing)
    assert sum(0 < p < len(mine) for p in progress) >= 2, progress
