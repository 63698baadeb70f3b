"""The API's Redis client (qi/api/sources/resp.py) against the session's real Redis: replies of
every shape the lookups meet, values that look like protocol, replies split across reads,
many requests multiplexed on two connections, an error reply failing only its own request, and a
refused connection surfacing as OSError (which the lookups turn into 503)."""

from __future__ import annotations

import asyncio
import os

import pytest
import redis

from qi.api.sources.resp import LeanRedis, RespError, hash_of

pytestmark = pytest.mark.stack


def test_replies_match_redis_py(local_stack) -> None:
    url = local_stack.urls()["redis"]
    k = f"resp-test-{os.getpid()}:"
    tricky = {"crlf": "a\r\nb\r\n", "empty": "", "dollar": "$5\r\nhello\r\n*2", "unicode": "kalibriert ✓ 校准",
              "big": "x" * 300_000}
    r = redis.Redis.from_url(url, decode_responses=True)
    r.hset(k + "h", mapping=tricky)
    r.set(k + "s", "plain")
    for i in range(200):
        r.hset(f"{k}row:{i}", mapping={"n": str(i), "pad": "p" * (i * 37)})

    async def go() -> None:
        c = LeanRedis(url, connections=2)
        try:
            got = await c.execute([("HGETALL", k + "h"), ("GET", k + "s"), ("GET", k + "missing"),
                                   ("HGETALL", k + "missing"), ("PING",)])
            assert hash_of(got[0]) == tricky and got[1:] == ["plain", None, [], "PONG"]
            # 400 requests in flight at once over two connections: each gets its own rows back
            many = await asyncio.gather(*(c.execute([("HGETALL", f"{k}row:{i % 200}"), ("GET", k + "s")])
                                          for i in range(400)))
            assert [hash_of(m[0])["n"] for m in many] == [str(i % 200) for i in range(400)]
            assert all(hash_of(m[0])["pad"] == "p" * ((i % 200) * 37) and m[1] == "plain" for i, m in enumerate(many))
            # an error reply (HGETALL of a string) fails that request only; the connection goes on
            bad, good = await asyncio.gather(c.execute([("HGETALL", k + "s")]), c.execute([("GET", k + "s")]),
                                             return_exceptions=True)
            assert isinstance(bad, RespError) and "WRONGTYPE" in str(bad) and good == ["plain"]
            assert await c.execute([("GET", k + "s")]) == ["plain"]
        finally:
            await c.close()
        refused = LeanRedis("redis://127.0.0.1:1/0")
        with pytest.raises(OSError):
            await refused.execute([("PING",)])

    try:
        asyncio.run(go())
    finally:
        r.delete(k + "h", k + "s", *(f"{k}row:{i}" for i in range(200)))
