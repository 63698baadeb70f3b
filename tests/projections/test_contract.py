"""The contract every sink honours (see projections/framework.py), on the real local stack.

Parametrized over ``SINK_KINDS``: a new sink passes these before it is used."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from projections.framework import Change, MapPatch, Projection, Table
from tests.projections.sinks import SINK_KINDS, make_sink, promote

pytestmark = pytest.mark.stack

ROWS = Table("rows", ("a", "b"), {"s": "text", "n": "bigint", "x": "double", "ok": "bool", "t": "timestamptz",
                                  "m": "jsonb"})
LOG = Table("log", ("event_id",), {"what": "text", "doc": "jsonb"}, mode="insert")
CONTRACT = Projection("contract", ("twins",), (ROWS, LOG), handlers={})
_targets = itertools.count()


@pytest.fixture(params=SINK_KINDS)
def run(request, platform, topic_prefix):
    """run(async fn(sink)): a fresh target of this sink kind, set up, dropped afterwards."""
    target = f"c{topic_prefix.replace('.', '').replace('-', '')}x{next(_targets)}"

    def go(body):
        async def main():
            s = make_sink(platform, request.param, CONTRACT, target)
            await s.setup()
            try:
                await body(s)
            finally:
                await s.drop()
                await s.close()
        asyncio.run(main())
    return go


def up(key, v, **fields):
    patch = {k: fields.pop(k) for k in list(fields) if isinstance(fields[k], MapPatch)}
    return Change("rows", key, v, fields, patch)


def test_fresh_target_is_empty_and_setup_is_repeatable(run):
    async def body(sink):
        await sink.setup()  # migrations already applied: a no-op
        assert await sink.positions() == {}
        assert await sink.snapshot() == {"rows": {}, "log": {}}
    run(body)


def test_changes_and_positions_are_stored_together(run):
    async def body(sink):
        await sink.apply([up(("k", "1"), 1, s="a", n=7, x=1.5, ok=True, t=1_790_000_000_123_456, m=MapPatch({"p": "q"})),
                          Change("log", ("e1",), 0, {"what": "w", "doc": {"l": [1, 2]}}, op="insert")],
                         {("topic", 0): 10, ("topic", 1): 3})
        snap = await sink.snapshot()
        assert snap["rows"] == {("k", "1"): {"s": "a", "n": 7, "x": 1.5, "ok": True, "t": 1_790_000_000_123_456,
                                              "m": {"p": "q"}, "_v": 1}}
        assert snap["log"] == {("e1",): {"what": "w", "doc": {"l": [1, 2]}}}
        assert await sink.positions() == {("topic", 0): 10, ("topic", 1): 3}
    run(body)


def test_older_or_equal_version_never_overwrites(run):
    async def body(sink):
        await sink.apply([up(("k", "1"), 5, s="new", m=MapPatch({"a": "1"}))], {("t", 0): 5})
        await sink.apply([up(("k", "1"), 4, s="old", m=MapPatch({"a": "stale"})),
                          up(("k", "1"), 5, s="redelivered")], {("t", 0): 6})
        row = (await sink.snapshot())["rows"][("k", "1")]
        assert (row["s"], row["m"], row["_v"]) == ("new", {"a": "1"}, 5)
        # positions only move forward
        await sink.apply([], {("t", 0): 2})
        assert await sink.positions() == {("t", 0): 6}
    run(body)


def test_newer_versions_merge_fields_and_patch_maps_in_order(run):
    async def body(sink):
        await sink.apply([up(("k", "1"), 1, s="a", n=1, m=MapPatch({"x": "1", "y": "2"})),
                          up(("k", "1"), 2, n=2, m=MapPatch({"z": "3"}, remove=("x",))),
                          up(("k", "2"), 1, s="b")], {})
        await sink.apply([up(("k", "1"), 3, m=MapPatch({"y": "22"}))], {})
        rows = (await sink.snapshot())["rows"]
        assert rows[("k", "1")] == {"s": "a", "n": 2, "x": None, "ok": None, "t": None, "m": {"y": "22", "z": "3"}, "_v": 3}
        assert rows[("k", "2")]["s"] == "b" and rows[("k", "2")]["m"] is None
    run(body)


def test_a_replayed_batch_changes_nothing(run):
    async def body(sink):
        batch = [up(("k", str(i % 7)), i, n=i, m=MapPatch({str(i): "v"})) for i in range(1, 200)]
        batch += [Change("log", (f"e{i}",), 0, {"what": str(i)}, op="insert") for i in range(50)]
        await sink.apply(batch, {("t", 0): 249})
        first = await sink.snapshot()
        await sink.apply(batch, {("t", 0): 249})
        await sink.apply([Change("log", ("e1",), 0, {"what": "changed"}, op="insert")], {})
        assert await sink.snapshot() == first
        assert len(first["log"]) == 50 and first["log"][("e1",)]["what"] == "1"
        assert first["rows"][("k", "0")]["n"] == 196 and len(first["rows"][("k", "0")]["m"]) == 28
    run(body)


def test_targets_are_isolated_and_drop_removes_one(run, platform):
    async def body(sink):
        other = make_sink(platform, sink.kind, CONTRACT, sink.target + "b")
        await other.setup()
        try:
            await other.apply([up(("o", "1"), 1, s="other")], {("t", 0): 1})
            await sink.apply([up(("k", "1"), 1, s="mine")], {("t", 0): 9})
            assert list((await sink.snapshot())["rows"]) == [("k", "1")]
            assert await other.positions() == {("t", 0): 1}
        finally:
            await other.drop()
            await other.close()
        assert list((await sink.snapshot())["rows"]) == [("k", "1")]

    run(body)

def test_promote_swaps_the_live_target_atomically(run, platform):
    async def body(sink):
        live = make_sink(platform, sink.kind, CONTRACT, None)
        await live.setup()
        try:
            await live.apply([up(("k", "1"), 1, s="old")], {("t", 0): 1})
            await sink.apply([up(("k", "1"), 2, s="rebuilt")], {("t", 0): 2})
            old = await promote(platform, sink)
            assert old is not None
            # the live handle now reads and writes the promoted target
            assert (await live.snapshot())["rows"][("k", "1")]["s"] == "rebuilt"
            await live.apply([up(("k", "2"), 1, s="after")], {("t", 0): 3})
            assert set((await sink.snapshot())["rows"]) == {("k", "1"), ("k", "2")}
            assert (await old.snapshot())["rows"][("k", "1")]["s"] == "old"
            await old.drop()
            await old.close()
        finally:
            await live.drop()
            await live.close()
    run(body)
