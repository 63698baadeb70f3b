"""A certificate's current status, as registry users (Postgres view) and verifiers (Redis
lookup) see it, against the rule applied to the independently computed state."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from projections.framework import ProjectionProcessor
from projections.redis_sink import Lookups
from projections.registry import LOOKUPS, REGISTRY
from tests.projections.harness import consumed, offline_serde
from tests.projections.world import expected, world

pytestmark = pytest.mark.stack


def _want_status(state: dict, cid: str, now_us: int) -> str:
    c = state["certificates"][(cid,)]
    v = state["certificate_validations"].get((cid,))
    if c["lifecycle"] in ("revoked", "superseded"):
        return c["lifecycle"]
    if c["valid_until"] < now_us:
        return "expired"
    if v is None:
        return "issued"
    return "valid" if v["verdict"] == "VALID" else "invalid"


def test_certificate_status_in_postgres_and_redis(platform, catalog):
    events = world(5000, seed=13, twins=30, firehose=0.2)
    state = expected(events, {"certificates", "certificate_validations", "twins"})

    async def go():
        serde = await offline_serde(catalog)
        records = consumed(serde, events)
        pg = platform.projection_sink(REGISTRY, "postgres")
        rd = platform.projection_sink(LOOKUPS, "redis")
        for projection, sink in ((REGISTRY, pg), (LOOKUPS, rd)):
            proc = ProjectionProcessor(projection, sink, pipelined=False)
            await proc.start()
            await proc.process([r for r in records if r.topic.split(".")[1] in projection.families])
        now_us = int(time.time() * 1_000_000)

        async def view(conn):
            cur = await conn.execute("SELECT certificate_id, status FROM certificate_status")
            return dict(await cur.fetchall())
        in_pg = await pg._run(view)
        lookups = Lookups.of(rd)
        await lookups.start()
        in_redis = {cid: (await lookups.certificate_status(cid, now_us))["status"] for (cid,) in state["certificates"]}
        unknown = (await lookups.certificate_status("no-such-cert", now_us))["status"]
        twin = await lookups.twin("tw-1")
        await lookups.close()
        for s in (pg, rd):
            await s.drop()
            await s.close()
        return in_pg, in_redis, unknown, twin, now_us

    in_pg, in_redis, unknown, twin, now_us = asyncio.run(go())
    want = {cid: _want_status(state, cid, now_us) for (cid,) in state["certificates"]}
    assert in_pg == want and in_redis == want and unknown == "unknown"
    assert {"valid", "invalid", "revoked", "superseded", "expired"} <= set(Counter(want.values()))
    assert twin["name"] == state["twins"][("tw-1",)]["name"]
