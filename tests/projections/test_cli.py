"""`qi worker project`, `qi projections status` and `qi projections rebuild` as a user runs them."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.projections.harness import (
    PROJECTION_OF, diff, projector_env, sink_positions, sink_snapshot, start_projector, stop, wait_until,
)
from tests.projections.world import expected, world

pytestmark = pytest.mark.stack


def test_project_status_and_rebuild_from_the_command_line(platform, stack_env, topic_prefix, tmp_path):
    events = world(3000, seed=9, twins=20, firehose=0.4)
    projection = PROJECTION_OF["redis"]
    n = sum(e.TOPIC_FAMILY in projection.families for e in events)

    async def publish():
        await platform.ensure_topics()
        serde = await platform.serde()
        async with platform.publisher(serde) as pub:
            await pub.publish_many(events)

    asyncio.run(publish())
    env = projector_env(stack_env, prefix=topic_prefix, run_dir=tmp_path / "run")
    sink = lambda: platform.projection_sink(projection, "redis")  # noqa: E731
    proc = start_projector(env, "redis", tmp_path / "p.log")
    try:
        wait_until(lambda: sum(sink_positions(sink).values()) == n, timeout_s=60)
    finally:
        assert stop(proc) == 0

    def qi(*args):
        p = subprocess.run([sys.executable, "-m", "qi", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=120)
        assert p.returncode == 0, p.stderr[-2000:]
        return p

    status = qi("projections", "status").stdout.splitlines()
    lookups = [line.split() for line in status if line.startswith("lookups")]
    registry = [line.split() for line in status if line.startswith("registry")]
    assert len(lookups) == 3 + 3 + 3 + 6 + 6  # partitions of twins, certificates, validations, readings, scores
    assert all(row[-1] == "0" for row in lookups) and sum(int(r[4]) for r in lookups) == n
    assert registry and all(row[4] == "0" for row in registry)  # no registry projector ran: all lag
    assert sum(int(r[-1]) for r in registry) == sum(e.TOPIC_FAMILY in PROJECTION_OF["postgres"].families
                                                    for e in events)

    before = sink_snapshot(sink)
    out = qi("projections", "rebuild", "lookups")
    assert "rebuilt lookups (redis)" in out.stdout and "/s ETA" in out.stderr and "swapped" in out.stderr
    after = sink_snapshot(sink)
    assert after == before
    assert diff(after, expected(events, set(after))) == []
