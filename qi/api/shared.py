"""Coalescing identical work: one computation in flight per key, its answer reused for a while."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


class Shared:
    def __init__(self, *, max_keys: int = 1000) -> None:
        self._max = self._sweep_at = max_keys
        self._recent: dict[Any, tuple[float, asyncio.Future]] = {}

    async def get(self, key: Any, make: Callable[[], Awaitable[Any]], *, ttl_s: float) -> Any:
        """``make()``'s answer for ``key``: awaited with whoever computes it now, reused for ``ttl_s``
        seconds after it is done; a failure is given to its waiters and not kept."""
        now = time.monotonic()
        hit = self._recent.get(key)
        if hit is not None and (not hit[1].done() or now - hit[0] < ttl_s):
            return await asyncio.shield(hit[1])
        if len(self._recent) >= self._sweep_at:
            self._recent = {k: v for k, v in self._recent.items() if not v[1].done() or now - v[0] < ttl_s}
            # the next sweep when the live keys have doubled: a sweep is O(keys), so with more live
            # keys than max_keys sweeping at every call would cost O(keys) per call
            self._sweep_at = max(self._max, 2 * len(self._recent))
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._recent[key] = (now, fut)
        try:
            value = await make()
        except BaseException as e:
            self._recent.pop(key, None)
            fut.set_exception(e)
            fut.exception()  # retrieved: only the waiters see it
            raise
        self._recent[key] = (time.monotonic(), fut)
        fut.set_result(value)
        return value
