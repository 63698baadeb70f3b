"""A whole mixed world projected in-process, with redelivered batches: each sink ends equal to
the state computed independently from the events (no Kafka; the real Postgres / Redis)."""

from __future__ import annotations

import asyncio
import random

import pytest

from projections.framework import ProjectionProcessor
from tests.projections.harness import PROJECTION_OF, consumed, diff, offline_serde
from tests.projections.world import expected, world

pytestmark = pytest.mark.stack


@pytest.mark.parametrize("kind", sorted(PROJECTION_OF))
def test_projection_with_redelivery_equals_the_independent_state(kind, platform, catalog):
    events = world(6000, seed=5, twins=40, firehose=0.4)
    projection = PROJECTION_OF[kind]

    async def go():
        serde = await offline_serde(catalog)
        records = [r for r in consumed(serde, events) if r.topic.split(".")[1] in projection.families]
        sink = platform.projection_sink(projection, kind, "w")
        proc = ProjectionProcessor(projection, sink)
        await proc.start()
        try:
            rnd = random.Random(3)
            i, batches = 0, []
            while i < len(records):
                n = rnd.randint(1, 700)
                batches.append(records[i:i + n])
                i += n
            for j, b in enumerate(batches):
                await proc.process(b)
                if j and rnd.random() < 0.3:  # redeliver an earlier batch
                    await proc.process(batches[rnd.randrange(j)])
            return await sink.snapshot(), await sink.positions(), len(records)
        finally:
            await sink.drop()
            await proc.close()

    snap, positions, n = asyncio.run(go())
    want = expected(events, {t.name for t in projection.tables})
    assert diff(snap, want) == []
    assert sum(positions.values()) == n
    assert all(len(rows) > 0 for rows in want.values())
