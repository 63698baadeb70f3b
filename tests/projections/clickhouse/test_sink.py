"""What the ClickHouse sink adds beyond the shared contract (tests/projections/test_contract.py)."""

from __future__ import annotations

import asyncio

import pytest

from projections.framework import Change
from tests.projections.test_contract import CONTRACT

pytestmark = pytest.mark.stack


def test_promote_swaps_a_rebuilt_target_in_and_keeps_the_old_one(platform, topic_prefix) -> None:
    base = "p" + topic_prefix.replace(".", "").replace("-", "")

    async def go():
        live = platform.projection_sink(CONTRACT, "clickhouse", base)
        new = platform.projection_sink(CONTRACT, "clickhouse", base + "_rb1")
        for s in (live, new):
            await s.setup()
        await live.apply([Change("rows", ("k", "1"), 1, {"s": "old"})], {("t", 0): 1})
        await new.apply([Change("rows", ("k", "1"), 2, {"s": "new"})], {("t", 0): 2})
        old_sink = await new.promote(base)
        old = old_sink.target
        try:
            after = await new.snapshot(), await new.positions()
            kept = await old_sink.snapshot()
            await old_sink.close()
        finally:
            for name in (base, old):
                s = platform.projection_sink(CONTRACT, "clickhouse", name)
                await s.drop()
                await s.close()
            await live.close()
            await new.close()
        return old, after, kept

    old, (snap, positions), kept = asyncio.run(go())
    assert old == base + "__old_rb1" and positions == {("t", 0): 2}
    assert snap["rows"][("k", "1")]["s"] == "new" and kept["rows"][("k", "1")]["s"] == "old"
