"""Redis sink: hashes under a key prefix, compare-and-set in Lua, pipelined per batch.

Key layout (``<gen>`` is the target's generation, e.g. ``live`` or ``rb1732400000``)::

    (``<projection>`` is prefixed with the deployment's topic prefix, ``.`` -> ``_``)
    qi:<projection>:current                      -> the live generation (a string); readers follow it
    qi:<projection>:<gen>:<table>:<k1>[:<k2>]    -> hash: the row's fields + "_v" (its version)
    qi:<projection>:<gen>:_positions             -> hash "<topic>|<partition>" -> next offset
    qi:<projection>:<gen>:_index:<table>         -> set of row keys (for snapshot/drop without SCAN)

For ``lookups``: ``twins:<twin_id>``, ``certificates:<certificate_id>``,
``certificate_validations:<certificate_id>``, ``sensor_latest:<twin_id>:<sensor_id>``,
``sensor_score:<twin_id>:<sensor_id>``. Values are strings: timestamps int micros, bools 1/0,
maps and lists JSON.

A batch is sent as Lua script calls (chunks of ``chunk`` changes) in one pipeline. Each change is
applied only when its version is greater than the stored ``_v`` (upsert) or the row is absent
(insert), so a replayed chunk changes nothing; the positions go in the last call, after every
change of the batch. The writes are idempotent, the positions only ever move forward.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any, ClassVar

import redis.asyncio as aioredis
import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from projections.framework import Change, Key, Positions, Projection, Sink, Table
from streams.errors import SinkUnavailable

log = structlog.get_logger(__name__)

# ARGV[1]: key prefix "qi:<p>:<gen>:"; ARGV[2]: JSON changes [[table, key, version, op, {field: value},
# {field: [set-map, remove-list]}], ...]; ARGV[3]: JSON positions {"topic|partition": offset} or "".
APPLY = """
local prefix = ARGV[1]
if string.sub(prefix, 1, 1) == '@' then
  -- follow the projection's current generation, read atomically with the writes
  local cur = string.sub(prefix, 2)
  prefix = string.sub(cur, 1, #cur - #'current') .. redis.call('GET', cur) .. ':'
end
local changes = cjson.decode(ARGV[2])
local applied = 0
for _, c in ipairs(changes) do
  local key = prefix .. c[1] .. ':' .. c[2]
  local v = c[3]
  local go
  if c[4] == 'i' then
    go = redis.call('EXISTS', key) == 0
  else
    local cur = redis.call('HGET', key, '_v')
    go = (not cur) or tonumber(cur) < tonumber(v)
  end
  if go then
    local args = {'_v', v}
    for f, val in pairs(c[5]) do
      if val ~= cjson.null then
        args[#args + 1] = f
        args[#args + 1] = val
      end
    end
    for f, val in pairs(c[5]) do
      if val == cjson.null then redis.call('HDEL', key, f) end
    end
    for f, p in pairs(c[6]) do
      local m = {}
      local cur = redis.call('HGET', key, f)
      if cur then m = cjson.decode(cur) end
      for mk, mv in pairs(p[1]) do m[mk] = mv end
      for _, mk in ipairs(p[2]) do m[mk] = nil end
      if next(m) == nil then args[#args + 1] = f; args[#args + 1] = '{}'
      else args[#args + 1] = f; args[#args + 1] = cjson.encode(m) end
    end
    redis.call('HSET', key, unpack(args))
    redis.call('SADD', prefix .. '_index:' .. c[1], c[2])
    applied = applied + 1
  end
end
if ARGV[3] ~= '' then
  local pk = prefix .. '_positions'
  for tp, off in pairs(cjson.decode(ARGV[3])) do
    local cur = redis.call('HGET', pk, tp)
    if (not cur) or tonumber(cur) < tonumber(off) then redis.call('HSET', pk, tp, off) end
  end
end
return applied
"""


def encode(kind: str, v: Any) -> Any:
    if v is None:
        return None
    if kind == "jsonb":
        return json.dumps(v, sort_keys=True, separators=(",", ":"))
    if kind == "bool":
        return "1" if v else "0"
    if kind == "double":
        return repr(float(v))
    return str(v)


def decode(kind: str, v: str | None) -> Any:
    if v is None:
        return None
    if kind in ("bigint", "timestamptz"):
        return int(v)
    if kind == "double":
        return float(v)
    if kind == "bool":
        return v == "1"
    if kind == "jsonb":
        return json.loads(v)
    return v


def row_key(key: Key) -> str:
    return ":".join(key)


class RedisSink(Sink):
    kind: ClassVar[str] = "redis"

    def __init__(self, projection: Projection, target: str, url: str, *, namespace: str = "",
                 chunk: int = 2000) -> None:
        super().__init__(projection, target)
        self.url = url
        self.base = f"qi:{namespace}{projection.name}:"
        self.chunk = chunk
        self._redis: aioredis.Redis | None = None
        self._sha: str | None = None

    @property
    def follows_current(self) -> bool:
        """The live sink (target ``""``) follows ``qi:<projection>:current``, so a rebuild's swap
        moves its writes too; a rebuild's sink names its generation."""
        return not self.target

    async def _prefix(self, r: aioredis.Redis) -> str:
        gen = self.target or await r.get(self.current_key)
        return f"{self.base}{gen}:"

    @property
    def current_key(self) -> str:
        return self.base + "current"

    async def _call(self, work) -> Any:
        try:
            if self._redis is None:
                self._redis = aioredis.from_url(self.url, decode_responses=True, socket_timeout=5,
                                                socket_connect_timeout=5)
            if self._sha is None:
                self._sha = await self._redis.script_load(APPLY)
            return await work(self._redis)
        except (RedisConnectionError, RedisTimeoutError, OSError) as e:
            if self._redis is not None:
                await self._redis.aclose()
            self._redis, self._sha = None, None
            raise SinkUnavailable(f"redis unavailable: {e}", dependency="redis") from e

    async def setup(self) -> None:
        async def work(r: aioredis.Redis) -> None:
            if self.follows_current:  # a first live writer starts generation g0; a rebuild's waits for promote
                await r.set(self.current_key, "g0", nx=True)
        await self._call(work)

    def _encode(self, c: Change, table: Table) -> list[Any]:
        cols = table.columns
        fields = {f: encode(cols[f], v) for f, v in c.set.items()}
        patches = {f: [dict(p.set) or {}, list(p.remove)] for f, p in c.patch.items()}
        return [c.table, row_key(c.key), str(c.version), "i" if c.op == "insert" else "u", fields or {}, patches or {}]

    async def apply(self, changes: list[Change], positions: Positions) -> None:
        tables = {t.name: t for t in self.projection.tables}
        encoded = [self._encode(c, tables[c.table]) for c in changes]
        pos = json.dumps({f"{t}|{p}": o for (t, p), o in positions.items()}) if positions else ""
        chunks = [encoded[i:i + self.chunk] for i in range(0, len(encoded), self.chunk)] or [[]]

        async def work(r: aioredis.Redis) -> None:
            pipe = r.pipeline(transaction=False)
            for i, ch in enumerate(chunks):
                body = _dumps_changes(ch)
                prefix = "@" + self.current_key if self.follows_current else await self._prefix(r)
                pipe.evalsha(self._sha, 0, prefix, body, pos if i == len(chunks) - 1 else "")
            await pipe.execute()
        await self._call(work)

    async def positions(self) -> Positions:
        async def work(r: aioredis.Redis) -> Positions:
            raw = await r.hgetall(await self._prefix(r) + "_positions")
            out: Positions = {}
            for tp, off in raw.items():
                t, p = tp.rsplit("|", 1)
                out[(t, int(p))] = int(off)
            return out
        return await self._call(work)

    async def snapshot(self) -> dict[str, dict[Key, dict[str, Any]]]:
        async def work(r: aioredis.Redis) -> dict[str, dict[Key, dict[str, Any]]]:
            out: dict[str, dict[Key, dict[str, Any]]] = {}
            prefix = await self._prefix(r)
            for table in self.projection.tables:
                keys = sorted(await r.smembers(prefix + "_index:" + table.name))
                pipe = r.pipeline(transaction=False)
                for k in keys:
                    pipe.hgetall(prefix + table.name + ":" + k)
                got: dict[Key, dict[str, Any]] = {}
                for k, h in zip(keys, await pipe.execute()):
                    row = {c: decode(kind, h.get(c)) for c, kind in table.columns.items()}
                    if table.mode == "upsert":
                        row["_v"] = int(h["_v"])
                    got[tuple(k.split(":", len(table.key) - 1))] = row
                out[table.name] = got
            return out
        return await self._call(work)

    async def drop(self) -> None:
        async def work(r: aioredis.Redis) -> None:
            batch: list[str] = []
            async for k in r.scan_iter(match=await self._prefix(r) + "*", count=1000):
                batch.append(k)
                if len(batch) >= 1000:
                    await r.unlink(*batch)
                    batch.clear()
            if batch:
                await r.unlink(*batch)
        await self._call(work)

    async def promote(self) -> RedisSink | None:
        """Point readers and the live writer at this generation (one GETSET); returns a sink on the
        previous generation, for the caller to drop, or None."""
        async def work(r: aioredis.Redis) -> str | None:
            return await r.getset(self.current_key, self.target)
        old = await self._call(work)
        if not old or old == self.target:
            return None
        prev = RedisSink(self.projection, old, self.url, chunk=self.chunk)
        prev.base = self.base
        return prev

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None


def _dumps_changes(ch: list[list[Any]]) -> str:
    # cjson decodes "{}" as an empty table; fields with None become cjson.null (deleted)
    return json.dumps(ch, separators=(",", ":"))


class Lookups:
    """Verification lookups against the current generation of the ``lookups`` projection."""

    def __init__(self, url: str, projection: Projection, *, namespace: str = "") -> None:
        self.url = url
        self.projection = projection
        self.base = f"qi:{namespace}{projection.name}:"
        self._r: aioredis.Redis | None = None

    async def start(self) -> None:
        self._r = aioredis.from_url(self.url, decode_responses=True)

    async def close(self) -> None:
        if self._r is not None:
            await self._r.aclose()

    async def _row(self, table: str, key: Key) -> dict[str, Any] | None:
        assert self._r is not None
        gen = await self._r.get(self.base + "current")
        if gen is None:
            return None
        h = await self._r.hgetall(f"{self.base}{gen}:{table}:{row_key(key)}")
        if not h:
            return None
        t = self.projection.table(table)
        return {c: decode(kind, h.get(c)) for c, kind in t.columns.items()}

    async def twin(self, twin_id: str) -> dict[str, Any] | None:
        return await self._row("twins", (twin_id,))

    async def sensor(self, twin_id: str, sensor_id: str) -> dict[str, Any]:
        return {"reading": await self._row("sensor_latest", (twin_id, sensor_id)),
                "score": await self._row("sensor_score", (twin_id, sensor_id))}

    async def certificate_status(self, certificate_id: str, now_us: int) -> dict[str, Any]:
        from projections.registry import certificate_status

        cert = await self._row("certificates", (certificate_id,))
        val = await self._row("certificate_validations", (certificate_id,))
        status = certificate_status(cert and cert["lifecycle"], val and val["verdict"],
                                    cert and cert["valid_until"], now_us)
        return {"certificate_id": certificate_id, "status": status, "certificate": cert, "validation": val}
