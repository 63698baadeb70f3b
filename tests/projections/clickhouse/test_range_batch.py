"""Decision 0124: the chDB owner runs range queries that arrive together as one engine query, each
request answered with its own lines (indexes from 0), requests of other parameters apart, and
malformed ranges refused."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest

from projections.clickhouse.query_server import QueryServer
from projections.clickhouse.range_batch import RangeAnswerError, split_answer

#: a range query that takes a while (the requests sent meanwhile must wait for the next one)
SLOW = """
SELECT concat(toString(q.1), ' ', {tag:String}, ' ', toString(q.2), '-', toString(q.3), '/', toString(q.4),
              ' in ', toString({lo_us:Int64}), '-', toString({hi_us:Int64}), '\\n')
FROM (SELECT sleep(0.3) AS z) ARRAY JOIN {ranges:Array(Tuple(UInt32, Int64, Int64, Int64))} AS q
WHERE z = 0
ORDER BY q.1
"""


@pytest.fixture
def warehouse(platform, topic_prefix):
    wh = platform.warehouse(database="ranges_" + re.sub(r"\W", "_", topic_prefix).strip("_"))
    wh.start()
    try:
        yield wh
    finally:
        wh.drop()
        wh.close()


def test_concurrent_range_requests_share_a_query_and_get_their_own_lines(warehouse, tmp_path) -> None:
    async def go():
        server = QueryServer(warehouse.dsn, warehouse.database, announce=tmp_path / "sql.json")
        await server.start()
        try:
            async with aiohttp.ClientSession() as http:
                async def ask(i: int, tag: str) -> tuple[int, bytes]:
                    body = {"sql": SLOW, "parameters": {"tag": tag}, "format": "RawBLOB",
                            "ranges": [[1000 + i, 2000 + i, 7]]}
                    async with http.post(f"{server.url}/sql", json=body) as r:
                        return r.status, await r.read()

                first = asyncio.ensure_future(ask(0, "a"))
                while server.batches.requests < 1:  # the first one's query is running
                    await asyncio.sleep(0)
                rest = await asyncio.gather(*(ask(i, "a" if i % 3 else "b") for i in range(1, 13)))
                answers = [await first, *rest]
                async with http.post(f"{server.url}/sql", json={"sql": SLOW, "parameters": {"tag": "a"},
                                                                "format": "RawBLOB", "ranges": [[5, 5, 1]]}) as r:
                    empty = (r.status, await r.json())
            return answers, empty, server.batches.queries, server.batches.requests
        finally:
            await server.close()

    answers, empty, queries, requests = asyncio.run(go())
    shared = 0
    for i, (status, body) in enumerate(answers):
        tag = "a" if i % 3 or i == 0 else "b"
        assert status == 200, body[:300]
        m = re.fullmatch(rb"0 %s %d-%d/7 in (\d+)-(\d+)\n" % (tag.encode(), 1000 + i, 2000 + i), body)
        assert m, body
        lo, hi = int(m[1]), int(m[2])
        assert lo <= 1000 + i and hi >= 2000 + i
        shared += (lo, hi) != (1000 + i, 2000 + i)  # its query held other requests' ranges too
    # 13 requests of two parameter sets: the first alone, the others while it ran, in a few queries
    assert requests == 13 and queries <= 5 and shared >= 10, (queries, requests, shared)
    assert empty[0] == 400 and "from < to" in empty[1]["error"]


def test_an_answer_without_range_indexes_is_a_query_error() -> None:
    assert split_answer(b"1 x\n0 y\n2 z\n", [2, 1]) == [b"1 x\n0 y\n", b"0 z\n"]
    for bad in (b"3 x\n", b"zero x\n", b"0\n"):
        with pytest.raises(RangeAnswerError):
            split_answer(bad, [2, 1])
