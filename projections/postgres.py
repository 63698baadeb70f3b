"""Postgres sink: one schema per target, versioned migrations, one transaction per batch.

Layout of a target schema (``registry`` live, ``registry__rb_<stamp>`` while rebuilding):

* one table per declared :class:`~projections.framework.Table`: its key columns, its columns
  and (upsert tables) ``aggregate_version``;
* ``projection_checkpoints(topic, partition, next_offset)``: written in the SAME transaction as
  the changes, so a batch is applied entirely with its positions or not at all;
* ``schema_migrations(version, applied_at)``: migration 1 creates the declared tables, later
  ones are the projection's ``extra_migrations["postgres"]`` (views, indexes).

Per batch and table: the stored rows of the batch's keys are read ``FOR UPDATE``, the changes
folded onto them in Python (stale versions skipped, map patches merged), the resulting rows
COPYed into a temp staging table, then one set-based ``INSERT ... ON CONFLICT DO UPDATE ...
WHERE stored.aggregate_version < excluded.aggregate_version``. No round trip per event.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import psycopg
import structlog
from psycopg import sql
from psycopg.types.json import Jsonb

from projections.framework import Change, Key, Positions, Projection, Sink, Table, fold
from streams.errors import SinkUnavailable

log = structlog.get_logger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PG_TYPES = {"text": "text", "bigint": "bigint", "double": "double precision", "bool": "boolean",
             "timestamptz": "timestamptz", "jsonb": "jsonb"}


def to_pg(kind: str, v: Any) -> Any:
    if v is None:
        return None
    if kind == "timestamptz":
        return EPOCH + timedelta(microseconds=v)
    if kind == "jsonb":
        return Jsonb(v)
    return v


def from_pg(kind: str, v: Any) -> Any:
    if v is None:
        return None
    if kind == "timestamptz":
        return (v - EPOCH) // timedelta(microseconds=1)
    return v


def _create_table(t: Table) -> sql.Composed:
    cols = [sql.SQL("{} text NOT NULL").format(sql.Identifier(k)) for k in t.key]
    cols += [sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(_PG_TYPES[k])) for c, k in t.columns.items()]
    if t.mode == "upsert":
        cols.append(sql.SQL("aggregate_version bigint NOT NULL"))
    cols.append(sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, t.key))))
    return sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(sql.Identifier(t.name), sql.SQL(", ").join(cols))


def migrations(projection: Projection) -> list[tuple[int, list[sql.Composable]]]:
    first: list[sql.Composable] = [_create_table(t) for t in projection.tables]
    first.append(sql.SQL("CREATE TABLE IF NOT EXISTS projection_checkpoints (topic text NOT NULL, "
                         "partition int NOT NULL, next_offset bigint NOT NULL, updated_at timestamptz "
                         "NOT NULL DEFAULT now(), PRIMARY KEY (topic, partition))"))
    out = [(1, first)]
    for version, text in projection.extra_migrations.get("postgres", ()):
        out.append((version, [sql.SQL(text)]))  # type: ignore[arg-type]  # trusted, from code
    return out


class PostgresSink(Sink):
    kind: ClassVar[str] = "postgres"

    def __init__(self, projection: Projection, target: str, dsn: str, *, live: str | None = None) -> None:
        super().__init__(projection, target)
        self.dsn = dsn
        self.live = live or projection.name
        self._conn: psycopg.AsyncConnection | None = None
        self._lock = asyncio.Lock()  # one transaction at a time (the runner's rebalance callback may overlap a batch)

    # -- connection ----------------------------------------------------------------------------
    async def _connection(self) -> psycopg.AsyncConnection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                await self._conn.close()
            try:
                self._conn = await psycopg.AsyncConnection.connect(self.dsn, connect_timeout=5)
            except psycopg.OperationalError as e:
                self._conn = None
                raise SinkUnavailable(f"postgres unreachable: {e}", dependency="postgres") from e
        return self._conn

    async def _run(self, work) -> Any:
        """Run ``work(conn)`` in one transaction; connection problems become SinkUnavailable."""
        async with self._lock:
            return await self._run_locked(work)

    async def _run_locked(self, work) -> Any:
        conn = await self._connection()
        try:
            async with conn.transaction():
                await conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(self.target)))
                return await work(conn)
        except (psycopg.OperationalError, psycopg.InterfaceError) as e:
            await conn.close()
            self._conn = None
            raise SinkUnavailable(f"postgres write failed: {e}", dependency="postgres") from e

    async def setup(self) -> None:
        async def work(conn: psycopg.AsyncConnection) -> None:
            await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.target)))
            await conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, "
                               "applied_at timestamptz NOT NULL DEFAULT now())")
            # one migrator at a time per target
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"qi-migrate-{self.target}",))
            done = {r[0] for r in await (await conn.execute("SELECT version FROM schema_migrations")).fetchall()}
            for version, statements in migrations(self.projection):
                if version in done:
                    continue
                for s in statements:
                    await conn.execute(s)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                log.info("postgres.migrated", target=self.target, version=version)
        await self._run(work)

    # -- the batch -------------------------------------------------------------------------------
    async def apply(self, changes: list[Change], positions: Positions) -> None:
        by_table: dict[str, list[Change]] = defaultdict(list)
        for c in changes:
            by_table[c.table].append(c)

        async def work(conn: psycopg.AsyncConnection) -> None:
            for name, cs in by_table.items():
                table = self.projection.table(name)
                if table.mode == "insert":
                    await self._insert(conn, table, cs)
                else:
                    await self._upsert(conn, table, cs)
            if positions:
                async with conn.cursor() as cur:
                    await cur.executemany(
                        "INSERT INTO projection_checkpoints (topic, partition, next_offset) VALUES (%s, %s, %s) "
                        "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = GREATEST("
                        "projection_checkpoints.next_offset, EXCLUDED.next_offset), updated_at = now()",
                        [(t, p, o) for (t, p), o in positions.items()])
        await self._run(work)

    async def _stage(self, conn: psycopg.AsyncConnection, table: Table, rows: list[tuple]) -> str:
        stg = f"stg_{table.name}"
        await conn.execute(sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {}) ON COMMIT DELETE ROWS")
                           .format(sql.Identifier(stg), sql.Identifier(table.name)))
        cols = self._columns(table)
        async with conn.cursor() as cur:
            async with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(
                    sql.Identifier(stg), sql.SQL(", ").join(map(sql.Identifier, cols)))) as copy:
                for row in rows:
                    await copy.write_row(row)
        return stg

    @staticmethod
    def _columns(table: Table) -> list[str]:
        cols = [*table.key, *table.columns]
        return cols + ["aggregate_version"] if table.mode == "upsert" else cols

    async def _insert(self, conn: psycopg.AsyncConnection, table: Table, cs: list[Change]) -> None:
        rows = [(*c.key, *(to_pg(k, c.set.get(col)) for col, k in table.columns.items())) for c in cs]
        stg = await self._stage(conn, table, rows)
        keys = sql.SQL(", ").join(map(sql.Identifier, table.key))
        await conn.execute(sql.SQL("INSERT INTO {t} SELECT DISTINCT ON ({k}) * FROM {s} ON CONFLICT ({k}) DO NOTHING")
                           .format(t=sql.Identifier(table.name), s=sql.Identifier(stg), k=keys))

    async def _upsert(self, conn: psycopg.AsyncConnection, table: Table, cs: list[Change]) -> None:
        per_key: dict[Key, list[Change]] = defaultdict(list)
        for c in cs:
            per_key[c.key].append(c)
        stored = await self._read(conn, table, list(per_key))
        rows = []
        for key, changes in per_key.items():
            row, version = stored.get(key, (None, None))
            folded = fold(row, version, changes)
            if folded is None:
                continue  # every change of this key is stale
            values, v = folded
            rows.append((*key, *(to_pg(k, values.get(col)) for col, k in table.columns.items()), v))
        if not rows:
            return
        stg = await self._stage(conn, table, rows)
        keys = sql.SQL(", ").join(map(sql.Identifier, table.key))
        sets = sql.SQL(", ").join(sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c))
                                  for c in [*table.columns, "aggregate_version"])
        await conn.execute(sql.SQL(
            "INSERT INTO {t} SELECT * FROM {s} ON CONFLICT ({k}) DO UPDATE SET {sets} "
            "WHERE {t}.aggregate_version < EXCLUDED.aggregate_version"
        ).format(t=sql.Identifier(table.name), s=sql.Identifier(stg), k=keys, sets=sets))

    async def _read(self, conn: psycopg.AsyncConnection, table: Table, keys: list[Key]
                    ) -> dict[Key, tuple[dict[str, Any], int]]:
        """Stored rows (canonical values) and versions of ``keys``, locked for this transaction."""
        n = len(table.key)
        cols = sql.SQL(", ").join(map(sql.Identifier, [*table.key, *table.columns, "aggregate_version"]))
        keycols = sql.SQL(", ").join(map(sql.Identifier, table.key))
        arrays = sql.SQL(", ").join(sql.SQL("%s::text[]") for _ in range(n))
        q = sql.SQL("SELECT {cols} FROM {t} WHERE ({k}) IN (SELECT * FROM unnest({a})) FOR UPDATE").format(
            cols=cols, t=sql.Identifier(table.name), k=keycols, a=arrays)
        params = [[k[i] for k in keys] for i in range(n)]
        out: dict[Key, tuple[dict[str, Any], int]] = {}
        for rec in await (await conn.execute(q, params)).fetchall():
            key = tuple(rec[:n])
            values = {c: from_pg(kind, rec[n + i]) for i, (c, kind) in enumerate(table.columns.items())}
            out[key] = (values, rec[-1])
        return out

    # -- reading back ----------------------------------------------------------------------------
    async def positions(self) -> Positions:
        async def work(conn: psycopg.AsyncConnection) -> Positions:
            exists = (await (await conn.execute(
                "SELECT to_regclass(%s)", (f"{self.target}.projection_checkpoints",))).fetchone())[0]
            if exists is None:
                return {}
            rows = await (await conn.execute("SELECT topic, partition, next_offset FROM projection_checkpoints")).fetchall()
            return {(t, p): o for t, p, o in rows}
        return await self._run(work)

    async def snapshot(self) -> dict[str, dict[Key, dict[str, Any]]]:
        async def work(conn: psycopg.AsyncConnection) -> dict[str, dict[Key, dict[str, Any]]]:
            out: dict[str, dict[Key, dict[str, Any]]] = {}
            for table in self.projection.tables:
                cols = self._columns(table)
                rows = await (await conn.execute(sql.SQL("SELECT {} FROM {}").format(
                    sql.SQL(", ").join(map(sql.Identifier, cols)), sql.Identifier(table.name)))).fetchall()
                n = len(table.key)
                got: dict[Key, dict[str, Any]] = {}
                for rec in rows:
                    row = {c: from_pg(kind, rec[n + i]) for i, (c, kind) in enumerate(table.columns.items())}
                    if table.mode == "upsert":
                        row["_v"] = rec[-1]
                    got[tuple(rec[:n])] = row
                out[table.name] = got
            return out
        return await self._run(work)

    async def drop(self) -> None:
        async def work(conn: psycopg.AsyncConnection) -> None:
            await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.target)))
        await self._run(work)

    async def promote(self) -> PostgresSink | None:
        """Make this target the live schema: both renames in one transaction. Returns a sink on
        the previous live schema (renamed aside), for the caller to drop, or None."""
        live, old = self.live, f"{self.live}__old_{self.target.rsplit('__', 1)[-1]}"

        async def work(conn: psycopg.AsyncConnection) -> bool:
            had = await (await conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (live,))).fetchone()
            if had:
                await conn.execute(sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(sql.Identifier(live), sql.Identifier(old)))
            await conn.execute(sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(sql.Identifier(self.target), sql.Identifier(live)))
            return bool(had)
        had = await self._run(work)
        self.target = live
        return PostgresSink(self.projection, old, self.dsn, live=live) if had else None

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
