"""Rebuild: a fresh target replayed from the log is swapped in atomically while the live
projector keeps running and the live target keeps answering queries; events published during
the rebuild are in the result; the old target is dropped."""

from __future__ import annotations

import asyncio

import pytest

from projections.framework import ProjectionProcessor
from projections.rebuild import rebuild
from tests.projections.harness import PROJECTION_OF, diff
from tests.projections.world import expected, world
from tests.streams.helpers import running, wait_for

pytestmark = pytest.mark.stack


async def _total(sink) -> int:
    return sum((await sink.positions()).values())


@pytest.mark.parametrize("kind", sorted(PROJECTION_OF))
def test_rebuild_swaps_in_an_equal_model_while_live_keeps_serving(kind, platform):
    projection = PROJECTION_OF[kind]
    events = world(9000, seed=23, twins=60, firehose=0.3)
    first, later = events[:7000], events[7000:]
    mine = lambda evs: sum(e.TOPIC_FAMILY in projection.families for e in evs)  # noqa: E731

    async def go():
        await platform.ensure_topics()
        serde = await platform.serde()
        live = platform.projection_sink(projection, kind)
        reader = platform.projection_sink(projection, kind)  # a query client of the live target
        async with platform.publisher(serde) as pub:
            await pub.publish_many(first)
            async with running(platform, ProjectionProcessor(projection, live)):
                deadline = asyncio.get_running_loop().time() + 60
                while await _total(reader) < mine(first):
                    assert asyncio.get_running_loop().time() < deadline
                    await asyncio.sleep(0.2)
                before = await reader.snapshot()
                assert diff(before, expected(first, set(before))) == []

                phases: list[str] = []
                task = asyncio.create_task(rebuild(platform, projection, kind, every_s=0.1,
                                                   on_progress=lambda p: phases.append(p.phase)))
                served = 0
                published = False
                while not task.done():  # the live model answers throughout
                    snap = await reader.snapshot()
                    assert len(snap["twins"]) == 60
                    served += 1
                    if not published and "replaying" in phases:
                        await pub.publish_many(later)
                        published = True
                    await asyncio.sleep(0.05)
                result = await task
                assert published and served >= 3 and phases[-1] == "swapped"
                deadline = asyncio.get_running_loop().time() + 60
                while await _total(reader) < mine(events):
                    assert asyncio.get_running_loop().time() < deadline
                    await asyncio.sleep(0.2)
                after = await reader.snapshot()
        old_gone = await _old_target_gone(kind, reader, result)
        await reader.close()
        return after, result, old_gone

    after, result, old_gone = asyncio.run(go())
    assert diff(after, expected(events, set(after))) == []
    assert result["dropped"] is not None and old_gone


async def _old_target_gone(kind, reader, result) -> bool:
    if kind == "postgres":
        async def work(conn):
            r = await conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (result["dropped"],))
            return (await r.fetchone())[0] == 0
        return await reader._run(work)

    async def work(r):
        return [k async for k in r.scan_iter(match=f"{reader.base}{result['dropped']}:*")] == []
    return await reader._call(work)
