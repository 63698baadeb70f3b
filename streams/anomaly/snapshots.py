"""Scorer snapshots in Redis: one key per input partition holding the scorer and the offset it covers.

A snapshot is ``pickle((format, model_version, next_offset, scorer))``. The store is the platform's
own Redis (trusted like its databases); a snapshot of another format or model version is ignored,
and the partition is rebuilt from the start of the readings topic instead.
"""

from __future__ import annotations

import pickle

import redis.asyncio as aioredis
from aiokafka import TopicPartition
from redis.exceptions import RedisError

from streams.anomaly.config import MODEL_VERSION
from streams.anomaly.scorer import Scorer
from streams.errors import RetriableError

_FORMAT = 1


class SnapshotStore:
    def __init__(self, url: str, *, namespace: str) -> None:
        self._url = url
        self._ns = namespace
        self._redis: aioredis.Redis | None = None

    async def start(self) -> None:
        self._redis = aioredis.from_url(self._url)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    def _key(self, tp: TopicPartition) -> str:
        return f"{self._ns}:{tp.topic}:{tp.partition}"

    async def load(self, tps: list[TopicPartition]) -> dict[TopicPartition, tuple[int, Scorer]]:
        assert self._redis is not None
        if not tps:
            return {}
        try:
            blobs = await self._redis.mget([self._key(tp) for tp in tps])
        except (RedisError, OSError) as e:
            raise RetriableError(f"cannot load scorer snapshots: {e}", dependency="redis") from e
        out = {}
        for tp, blob in zip(tps, blobs):
            if blob is None:
                continue
            fmt, version, offset, scorer = pickle.loads(blob)
            if fmt == _FORMAT and version == MODEL_VERSION:
                out[tp] = (offset, scorer)
        return out

    async def save(self, items: dict[TopicPartition, tuple[int, Scorer]]) -> None:
        """One SET per partition, in turn: only one partition's pickled copy is in memory at a time."""
        assert self._redis is not None
        for tp, (off, sc) in items.items():
            blob = pickle.dumps((_FORMAT, MODEL_VERSION, off, sc), protocol=pickle.HIGHEST_PROTOCOL)
            try:
                await self._redis.set(self._key(tp), blob)
            except (RedisError, OSError) as e:
                raise RetriableError(f"cannot save scorer snapshots: {e}", dependency="redis") from e
