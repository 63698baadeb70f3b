"""The registry at a point in time (``projections.pointintime``): the registry topics replayed
in memory up to T, one replay at a time, recent answers kept for a few seconds."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from aiokafka.errors import KafkaError

from projections.pointintime.registry import RegistryState
from projections.pointintime.replay import FAMILIES, fold_registry
from qi.api.errors import Unavailable


class RegistryHistory:
    def __init__(self, *, bootstrap: str, serde_factory, topics: list[str], cache_s: float = 10.0) -> None:
        self._bootstrap, self._serde_factory, self._topics = bootstrap, serde_factory, topics
        self._serde = None
        self._lock = asyncio.Lock()
        self._cache: dict[tuple[str, datetime], tuple[float, RegistryState, int]] = {}
        self._cache_s = cache_s

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def at(self, mode: str, at: datetime) -> tuple[RegistryState, int]:
        async with self._lock:
            hit = self._cache.get((mode, at))
            if hit and time.monotonic() - hit[0] < self._cache_s:
                return hit[1], hit[2]
            try:
                if self._serde is None:
                    self._serde = await self._serde_factory()
                state, read = await asyncio.wait_for(fold_registry(
                    bootstrap=self._bootstrap, serde=self._serde, topics=self._topics, mode=mode, at=at,
                    client_id="qi-api-replay"), timeout=60)
            except (KafkaError, OSError, asyncio.TimeoutError) as e:
                raise Unavailable(f"replaying the registry failed: {type(e).__name__}; retry later") from e
            self._cache = {k: v for k, v in self._cache.items() if time.monotonic() - v[0] < self._cache_s}
            self._cache[(mode, at)] = (time.monotonic(), state, read)
            return state, read


__all__ = ["FAMILIES", "RegistryHistory"]
