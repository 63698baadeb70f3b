"""Hot lookups in Redis (``projections.registry.LOOKUPS``, key layout in projections/redis_sink.py):
a sensor's latest reading and score, a certificate's status. One pipelined round trip per request,
through :class:`qi.api.sources.resp.LeanRedis` (docs/decisions/0120) for ``redis://`` / ``unix://``
URLs, through redis-py for any other (``rediss://``)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from projections.framework import Projection
from projections.redis_sink import decode, row_key
from qi.api.errors import Unavailable
from qi.api.sources.resp import LeanRedis, RespError, hash_of


#: the live generation changes only when a rebuild swaps it in; readers follow within this long
GENERATION_TTL_S = 1.0


class _RedisPy:
    """The same ``execute`` over redis-py, for URLs LeanRedis does not speak (TLS)."""

    def __init__(self, url: str, max_connections: int) -> None:
        self._r = aioredis.from_url(url, decode_responses=True, max_connections=max_connections,
                                    socket_timeout=5.0, socket_connect_timeout=2.0)

    async def execute(self, commands: Sequence[Sequence[str]]) -> list[Any]:
        async with self._r.pipeline(transaction=False) as p:
            for c in commands:
                p.execute_command(*c)
            got = await p.execute()
        # HGETALL through a raw execute_command comes back as a dict already; as a list from LeanRedis
        return [[x for kv in g.items() for x in kv] if isinstance(g, dict) else g for g in got]

    async def close(self) -> None:
        await self._r.aclose()


class LookupReader:
    def __init__(self, url: str, projection: Projection, *, namespace: str = "", max_connections: int = 64) -> None:
        self.projection = projection
        self.base = f"qi:{namespace}{projection.name}:"
        self._url, self._max = url, max_connections
        self._r: LeanRedis | _RedisPy | None = None
        self._gen: tuple[float, str | None] = (0.0, None)

    async def start(self) -> None:
        if self._url.startswith(("redis://", "unix://")):
            self._r = LeanRedis(self._url, connections=2, timeout_s=5.0, connect_timeout_s=2.0)
        else:
            self._r = _RedisPy(self._url, self._max)

    async def close(self) -> None:
        if self._r is not None:
            await self._r.close()
            self._r = None

    def decode(self, table: str, h: dict[str, str]) -> dict[str, Any] | None:
        """A row's hash as its typed columns (None for a missing row)."""
        if not h:
            return None
        t = self.projection.table(table)
        return {c: decode(kind, h.get(c)) for c, kind in t.columns.items()}

    async def hashes(self, wanted: list[tuple[str, tuple[str, ...]]]) -> list[dict[str, str]]:
        """The raw hashes of rows ``(table, key)`` of the live generation ({} for a missing row)."""
        assert self._r is not None, "LookupReader not started"
        try:
            at, gen = self._gen
            if gen is None or time.monotonic() - at > GENERATION_TTL_S:
                (gen,) = await self._r.execute([("GET", self.base + "current")])
                self._gen = (time.monotonic(), gen)
            if gen is None:
                return [{} for _ in wanted]
            replies = await self._r.execute([("HGETALL", f"{self.base}{gen}:{table}:{row_key(key)}")
                                             for table, key in wanted])
        except (RedisError, RespError, OSError) as e:  # TimeoutError is an OSError
            raise Unavailable(f"the lookups (Redis) failed: {type(e).__name__}; retry later") from e
        return [hash_of(h) for h in replies]

    async def _rows(self, wanted: list[tuple[str, tuple[str, ...]]]) -> list[dict[str, Any] | None]:
        return [self.decode(t, h) for (t, _), h in zip(wanted, await self.hashes(wanted))]

    async def sensor(self, twin_id: str, sensor_id: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        reading, score = await self._rows([("sensor_latest", (twin_id, sensor_id)),
                                           ("sensor_score", (twin_id, sensor_id))])
        return reading, score

    async def certificate(self, certificate_id: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        cert, val = await self._rows([("certificates", (certificate_id,)),
                                      ("certificate_validations", (certificate_id,))])
        return cert, val

    async def certificate_hashes(self, certificate_id: str) -> tuple[dict[str, str], dict[str, str]]:
        """The certificate's and its latest validation's hashes, undecoded (for caching by content)."""
        cert, val = await self.hashes([("certificates", (certificate_id,)),
                                       ("certificate_validations", (certificate_id,))])
        return cert, val

    async def ping(self) -> bool:
        try:
            assert self._r is not None
            return (await self._r.execute([("PING",)]))[0] in ("PONG", True)
        except Exception:  # noqa: BLE001 - readiness
            return False
