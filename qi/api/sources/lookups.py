"""Hot lookups in Redis (``projections.registry.LOOKUPS``, key layout in projections/redis_sink.py):
a sensor's latest reading and score, a certificate's status. One pipeline per request."""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from projections.framework import Projection
from projections.redis_sink import decode, row_key
from qi.api.errors import Unavailable


#: the live generation changes only when a rebuild swaps it in; readers follow within this long
GENERATION_TTL_S = 1.0


class LookupReader:
    def __init__(self, url: str, projection: Projection, *, namespace: str = "", max_connections: int = 64) -> None:
        self.projection = projection
        self.base = f"qi:{namespace}{projection.name}:"
        self._url, self._max = url, max_connections
        self._r: aioredis.Redis | None = None
        self._gen: tuple[float, str | None] = (0.0, None)

    async def start(self) -> None:
        self._r = aioredis.from_url(self._url, decode_responses=True, max_connections=self._max,
                                    socket_timeout=5.0, socket_connect_timeout=2.0)

    async def close(self) -> None:
        if self._r is not None:
            await self._r.aclose()
            self._r = None

    def _decode(self, table: str, h: dict[str, str]) -> dict[str, Any] | None:
        if not h:
            return None
        t = self.projection.table(table)
        return {c: decode(kind, h.get(c)) for c, kind in t.columns.items()}

    async def _rows(self, wanted: list[tuple[str, tuple[str, ...]]]) -> list[dict[str, Any] | None]:
        assert self._r is not None, "LookupReader not started"
        try:
            at, gen = self._gen
            if gen is None or time.monotonic() - at > GENERATION_TTL_S:
                gen = await self._r.get(self.base + "current")
                self._gen = (time.monotonic(), gen)
            if gen is None:
                return [None] * len(wanted)
            async with self._r.pipeline(transaction=False) as p:
                for table, key in wanted:
                    p.hgetall(f"{self.base}{gen}:{table}:{row_key(key)}")
                hashes = await p.execute()
        except (RedisError, OSError) as e:
            raise Unavailable(f"the lookups (Redis) failed: {type(e).__name__}; retry later") from e
        return [self._decode(t, h) for (t, _), h in zip(wanted, hashes)]

    async def sensor(self, twin_id: str, sensor_id: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        reading, score = await self._rows([("sensor_latest", (twin_id, sensor_id)),
                                           ("sensor_score", (twin_id, sensor_id))])
        return reading, score

    async def certificate(self, certificate_id: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        cert, val = await self._rows([("certificates", (certificate_id,)),
                                      ("certificate_validations", (certificate_id,))])
        return cert, val

    async def ping(self) -> bool:
        try:
            assert self._r is not None
            return bool(await self._r.ping())
        except Exception:  # noqa: BLE001 - readiness
            return False
