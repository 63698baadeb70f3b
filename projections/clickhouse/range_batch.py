"""Range queries that arrive together become one engine query (decision 0124).

A *range query* is SQL that takes ``{ranges:Array(Tuple(UInt32, Int64, Int64, Int64))}`` (index,
from_us, to_us, bucket_us), ``{lo_us:Int64}`` and ``{hi_us:Int64}`` (the union of the ranges) and
writes at most one line per range, starting with the range's index and a space (e.g. the API's
sensor series, ``qi.api.series.BATCH_SQL``). The engine spends most of such a query analysing and
planning it (~25-30 ms), not reading rows, so requests with the same SQL, format and other parameters
that arrive while one of them runs wait, then go together: their ranges in one array, each request
answered with its own lines, renumbered from 0. Nothing is cached: every request is answered by a
query that started after it arrived (decision 0068).

The chDB owner batches here for every API process at once (they got uneven shares of the clients,
so per-process batching left one of them issuing small batches); a server-DSN API does the same
in its own process.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from projections.clickhouse.errors import QueryError

Range = tuple[int, int, int]  # from_us, to_us, bucket_us
#: runs a range query: (key, sql, parameters with ranges/lo_us/hi_us set, format) -> the engine's output
Run = Callable[[Hashable, str, dict[str, Any], str], Awaitable[bytes]]


class RangeAnswerError(QueryError):
    """The engine's answer to a range query is not one line per range, index first."""


def parse_ranges(value: Any, limit: int) -> list[Range]:
    """A request's ``ranges`` ([[from_us, to_us, bucket_us], ...], integers, from < to, bucket >= 1)."""
    if not isinstance(value, list) or not 1 <= len(value) <= limit:
        raise ValueError(f"ranges must be a list of 1..{limit} [from_us, to_us, bucket_us]")
    out = []
    for r in value:
        if not (isinstance(r, list) and len(r) == 3 and all(type(x) is int for x in r)
                and r[0] < r[1] and r[2] >= 1):
            raise ValueError("each range must be [from_us, to_us, bucket_us], integers, from < to, bucket >= 1")
        out.append((r[0], r[1], r[2]))
    return out


def range_parameters(ranges: list[Range]) -> dict[str, Any]:
    """``lo_us``, ``hi_us`` and ``ranges`` (ClickHouse's text form of the array; integers only)."""
    return {"lo_us": min(f for f, _, _ in ranges), "hi_us": max(t for _, t, _ in ranges),
            "ranges": "[" + ",".join(f"({k},{int(f)},{int(t)},{int(b)})" for k, (f, t, b) in enumerate(ranges)) + "]"}


def split_answer(body: bytes, sizes: list[int]) -> list[bytes]:
    """The answer to ranges of several requests (``sizes`` of them each, in order) as each request's
    lines, indexes renumbered from 0."""
    owner: list[tuple[int, int]] = [(i, k) for i, n in enumerate(sizes) for k in range(n)]
    out: list[list[bytes]] = [[] for _ in sizes]
    for line in body.split(b"\n"):
        if not line:
            continue
        k, sep, rest = line.partition(b" ")
        try:
            i, local = owner[int(k)]
        except (ValueError, IndexError):
            raise RangeAnswerError(f"a range query answered a line without a range index: {line[:80]!r}") from None
        if not sep:
            raise RangeAnswerError(f"a range query answered a line without a range index: {line[:80]!r}")
        out[i].append(b"%d %s\n" % (local, rest))
    return [b"".join(lines) for lines in out]


class RangeBatcher:
    """``answer(key, sql, parameters, fmt, ranges)``: the request's lines. Requests of one ``key`` that
    arrive while its query runs go together in the next one (at most ``max_ranges`` ranges a query).

    After a batch of several, the next query waits for as many requests as that batch had, for at
    most a quarter of the last query's time (and ``max_gather_s``): their clients ask again as soon as
    they have their answers, and without the wait the first of them would go alone, the rest
    queueing behind it (decision 0123). An idle key's first request starts its query at once."""

    def __init__(self, run: Run, *, max_ranges: int = 64, max_gather_s: float = 0.05) -> None:
        self._run = run
        self._max = max_ranges
        self._max_gather_s = max_gather_s
        self._waiting: dict[Hashable, list[tuple[list[Range], asyncio.Future]]] = defaultdict(list)
        self._arrived: dict[Hashable, asyncio.Event] = {}
        self._draining: set[Hashable] = set()
        self.queries = 0
        self.requests = 0

    @staticmethod
    def key(database: str, sql: str, parameters: dict[str, Any], fmt: str) -> Hashable:
        return database, sql, fmt, json.dumps(parameters, sort_keys=True, default=str)

    async def answer(self, key: Hashable, sql: str, parameters: dict[str, Any], fmt: str,
                     ranges: list[Range]) -> bytes:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        self._waiting[key].append((ranges, fut))
        self.requests += 1
        if key not in self._draining:
            self._draining.add(key)
            loop.create_task(self._drain(key, sql, parameters, fmt))
        elif (arrived := self._arrived.get(key)) is not None:
            arrived.set()
        return await fut

    async def _gather(self, key: Hashable, want: int, wait_s: float) -> None:
        """Wait until ``want`` requests of ``key`` wait, or ``wait_s`` has passed."""
        loop = asyncio.get_running_loop()
        until = loop.time() + wait_s
        arrived = self._arrived[key] = asyncio.Event()
        try:
            while len(self._waiting.get(key, ())) < want and (left := until - loop.time()) > 0:
                arrived.clear()
                try:
                    await asyncio.wait_for(arrived.wait(), left)
                except TimeoutError:
                    break
        finally:
            self._arrived.pop(key, None)

    def _take(self, key: Hashable) -> list[tuple[list[Range], asyncio.Future]]:
        """The first waiting requests of ``key`` with at most ``max_ranges`` ranges (at least one)."""
        waiting = self._waiting[key]
        n, total = 0, 0
        while n < len(waiting) and (n == 0 or total + len(waiting[n][0]) <= self._max):
            total += len(waiting[n][0])
            n += 1
        batch = waiting[:n]
        del waiting[:n]
        return batch

    async def _drain(self, key: Hashable, sql: str, parameters: dict[str, Any], fmt: str) -> None:
        last, last_s = 0, 0.0
        loop = asyncio.get_running_loop()
        try:
            while True:
                if last > 1 and len(self._waiting.get(key, ())) < last:
                    await self._gather(key, last, min(self._max_gather_s, last_s / 4))
                if not self._waiting.get(key):
                    break
                live = [(r, f) for r, f in self._take(key) if not f.done()]  # a request given up on
                last = len(live)
                if not live:
                    continue
                started = loop.time()
                try:
                    ranges = [r for rs, _ in live for r in rs]
                    self.queries += 1
                    body = await self._run(key, sql, {**parameters, **range_parameters(ranges)}, fmt)
                    per = split_answer(body, [len(rs) for rs, _ in live])
                except Exception as e:  # noqa: BLE001 - handed to every request of the batch
                    last = 0  # no waiting for more after a failure
                    for _, f in live:
                        if not f.done():
                            f.set_exception(e)
                    continue
                last_s = loop.time() - started
                for (_, f), lines in zip(live, per):
                    if not f.done():
                        f.set_result(lines)
        finally:
            self._draining.discard(key)
            if not self._waiting.get(key):
                self._waiting.pop(key, None)
