"""The ClickHouse sink of the projection framework (``projections.framework.Sink``).

A target is a database. Each projection table is a ``ReplacingMergeTree``
ordered by its key: upsert tables carry ``_v`` (the row's version) as the
replacing version, so the newest version survives merges and ``FINAL``; insert
tables keep the first row of a key (keys already stored are not written again).
``apply`` reads the stored rows of the batch's upsert keys (``FINAL``), folds the
changes over them (``framework.fold``: an older or equal version is ignored),
inserts the new rows column-wise, then the positions. There are no transactions
across tables, so ``apply`` is idempotent instead: a crash between the rows and
the positions redelivers a batch whose versions are no longer newer.

Value types: text/jsonb -> Nullable(String) (jsonb as JSON text), bigint ->
Nullable(Int64), double -> Nullable(Float64), bool -> Nullable(Bool),
timestamptz -> Nullable(DateTime64(6, 'UTC')) (int micros in and out).
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from typing import Any

from projections.clickhouse.errors import WarehouseUnavailable
from projections.clickhouse.warehouse import _IDENT, _client, _driver_error
from projections.framework import Change, Key, Positions, Projection, Sink, Table, fold
from streams.errors import SinkUnavailable

_TYPES = {"text": "Nullable(String)", "jsonb": "Nullable(String)", "bigint": "Nullable(Int64)",
          "double": "Nullable(Float64)", "bool": "Nullable(Bool)", "timestamptz": "Nullable(DateTime64(6, 'UTC'))"}


def _to_ch(kind: str, v: Any) -> Any:
    if v is None:
        return None
    if kind == "jsonb":
        return json.dumps(v, ensure_ascii=False, sort_keys=True)
    return v


def _select(col: str, kind: str) -> str:
    return f"toUnixTimestamp64Micro(`{col}`)" if kind == "timestamptz" else f"`{col}`"


def swap_databases(client, new: str, live: str, tables: list[str], old: str, command, query) -> str | None:
    """Move ``new``'s tables into ``live`` (``EXCHANGE TABLES``, atomic per table; readers of ``live``
    see old or new tables, never none), then rename ``new`` (now holding the old tables) to ``old``.
    If ``live`` does not exist, ``new`` is renamed to it. Returns ``old`` or None."""
    if not query(client, f"SELECT 1 FROM system.databases WHERE name = '{live}'"):
        command(client, f"RENAME DATABASE `{new}` TO `{live}`")
        return None
    have = {r[0] for r in query(client, f"SELECT name FROM system.tables WHERE database = '{live}'")}
    for t in tables:
        if t in have:
            command(client, f"EXCHANGE TABLES `{live}`.`{t}` AND `{new}`.`{t}`")
        else:
            command(client, f"RENAME TABLE `{new}`.`{t}` TO `{live}`.`{t}`")
    command(client, f"DROP DATABASE IF EXISTS `{old}`")
    command(client, f"RENAME DATABASE `{new}` TO `{old}`")
    return old


def _from_ch(kind: str, v: Any) -> Any:
    if v is None:
        return None
    if kind == "jsonb":
        return json.loads(v)
    if kind == "bool":
        return bool(v)
    return v


class ClickHouseSink(Sink):
    kind = "clickhouse"

    def __init__(self, projection: Projection, target: str, dsn: str, *, live: str | None = None) -> None:
        super().__init__(projection, target)
        if not _IDENT.match(target):
            raise ValueError(f"not a valid ClickHouse database name: {target!r}")
        self._dsn = dsn
        self.live = live or projection.name
        self._client: Any = None

    # -- plumbing --------------------------------------------------------------------------------
    async def _run(self, fn, *args):
        def work():
            if self._client is None:
                self._client = _client(self._dsn)
            return fn(self._client, *args)
        try:
            return await asyncio.to_thread(work)
        except WarehouseUnavailable as e:
            raise SinkUnavailable(str(e), dependency="clickhouse") from e

    def _command(self, client, q: str) -> None:
        try:
            client.command(q)
        except Exception as e:
            raise _driver_error(e, q.split("(")[0]) from e

    def _query(self, client, q: str):
        try:
            return client.query(q).result_rows
        except Exception as e:
            raise _driver_error(e, "query") from e

    # -- lifecycle -------------------------------------------------------------------------------
    async def setup(self) -> None:
        def work(client):
            db = self.target
            self._command(client, f"CREATE DATABASE IF NOT EXISTS `{db}`")
            for t in self.projection.tables:
                cols = [f"`{k}` String" for k in t.key]
                cols += [f"`{c}` {_TYPES[kind]}" for c, kind in t.columns.items()]
                version = ""
                if t.mode == "upsert":
                    cols.append("`_v` Int64")
                    version = "`_v`"
                order = ", ".join(f"`{k}`" for k in t.key)
                self._command(client, f"CREATE TABLE IF NOT EXISTS `{db}`.`{t.name}` ({', '.join(cols)}) "
                                      f"ENGINE = ReplacingMergeTree({version}) ORDER BY ({order})")
            self._command(client, f"CREATE TABLE IF NOT EXISTS `{db}`.`_positions` (topic String, "
                                  "partition UInt32, next_offset UInt64) ENGINE = ReplacingMergeTree(next_offset) "
                                  "ORDER BY (topic, partition)")
            for version, statement in self.projection.extra_migrations.get("clickhouse", ()):
                self._command(client, statement.format(db=db))
        await self._run(work)

    async def drop(self) -> None:
        await self._run(lambda c: self._command(c, f"DROP DATABASE IF EXISTS `{self.target}`"))

    async def promote(self, live: str | None = None) -> ClickHouseSink | None:
        """Make this target the live database: ``EXCHANGE TABLES`` per table (each swap atomic), then
        the database now holding the old tables is renamed aside. Returns a sink on it (for the caller
        to drop) or None when there was no live database."""
        live = live or self.live
        tables = [t.name for t in self.projection.tables] + ["_positions"]
        old = f"{live}__old_{self.target.rsplit('_', 1)[-1]}"
        result = await self._run(lambda c: swap_databases(c, self.target, live, tables, old, self._command,
                                                          self._query))
        self.target = live
        return ClickHouseSink(self.projection, result, self._dsn, live=live) if result else None

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await asyncio.to_thread(client.close)

    # -- the batch -------------------------------------------------------------------------------
    async def apply(self, changes: list[Change], positions: Positions) -> None:
        by_table: dict[str, list[Change]] = defaultdict(list)
        for c in changes:
            by_table[c.table].append(c)

        def work(client):
            for name, cs in by_table.items():
                table = self.projection.table(name)
                rows = self._insert_rows(client, table, cs) if table.mode == "insert" else \
                    self._upsert_rows(client, table, cs)
                if rows:
                    self._insert(client, table, rows)
            if positions:
                items = sorted(positions.items())
                try:
                    client.insert(f"`{self.target}`.`_positions`", [[t for (t, _), _ in items],
                                  [p for (_, p), _ in items], [o for _, o in items]],
                                  column_names=["topic", "partition", "next_offset"], column_oriented=True)
                except Exception as e:
                    raise _driver_error(e, "save positions") from e
        await self._run(work)

    def _insert(self, client, table: Table, rows: list[tuple]) -> None:
        names = [*table.key, *table.columns] + (["_v"] if table.mode == "upsert" else [])
        try:
            client.insert(f"`{self.target}`.`{table.name}`", rows, column_names=names)
        except Exception as e:
            raise _driver_error(e, f"insert into {table.name}") from e

    def _stored(self, client, table: Table, keys: list[Key]) -> dict[Key, tuple[dict[str, Any], int | None]]:
        """Stored rows (canonical values) and versions of ``keys`` (FINAL: one row per key)."""
        from clickhouse_connect.driver.binding import format_query_value

        if not keys:
            return {}
        n = len(table.key)
        keycols = ", ".join(f"`{k}`" for k in table.key)
        wanted = ", ".join(format_query_value(k if n > 1 else k[0]) for k in keys)
        cols = [f"`{k}`" for k in table.key] + [_select(c, kind) for c, kind in table.columns.items()]
        if table.mode == "upsert":
            cols.append("`_v`")
        rows = self._query(client, f"SELECT {', '.join(cols)} FROM `{self.target}`.`{table.name}` FINAL "
                                   f"WHERE ({keycols}) IN ({wanted})")
        out = {}
        for rec in rows:
            values = {c: _from_ch(kind, rec[n + i]) for i, (c, kind) in enumerate(table.columns.items())}
            out[tuple(rec[:n])] = (values, rec[-1] if table.mode == "upsert" else None)
        return out

    def _insert_rows(self, client, table: Table, cs: list[Change]) -> list[tuple]:
        first: dict[Key, Change] = {}
        for c in cs:
            first.setdefault(c.key, c)
        stored = self._stored(client, table, list(first))
        return [(*k, *(_to_ch(kind, c.set.get(col)) for col, kind in table.columns.items()))
                for k, c in first.items() if k not in stored]

    def _upsert_rows(self, client, table: Table, cs: list[Change]) -> list[tuple]:
        per_key: dict[Key, list[Change]] = defaultdict(list)
        for c in cs:
            per_key[c.key].append(c)
        stored = self._stored(client, table, list(per_key))
        rows = []
        for key, changes in per_key.items():
            row, version = stored.get(key, (None, None))
            folded = fold(row, version, changes)
            if folded is None:
                continue
            values, v = folded
            rows.append((*key, *(_to_ch(kind, values.get(col)) for col, kind in table.columns.items()), v))
        return rows

    # -- reading back ----------------------------------------------------------------------------
    async def positions(self) -> Positions:
        rows = await self._run(lambda c: self._query(
            c, f"SELECT topic, partition, max(next_offset) FROM `{self.target}`.`_positions` GROUP BY topic, partition"))
        return {(t, int(p)): int(o) for t, p, o in rows}

    async def snapshot(self) -> dict[str, dict[Key, dict[str, Any]]]:
        def work(client):
            out: dict[str, dict[Key, dict[str, Any]]] = {}
            for table in self.projection.tables:
                n = len(table.key)
                cols = [f"`{k}`" for k in table.key] + [_select(c, kind) for c, kind in table.columns.items()]
                if table.mode == "upsert":
                    cols.append("`_v`")
                got: dict[Key, dict[str, Any]] = {}
                for rec in self._query(client, f"SELECT {', '.join(cols)} FROM `{self.target}`.`{table.name}` FINAL"):
                    row = {c: _from_ch(kind, rec[n + i]) for i, (c, kind) in enumerate(table.columns.items())}
                    if table.mode == "upsert":
                        row["_v"] = rec[-1]
                    got[tuple(rec[:n])] = row
                out[table.name] = got
            return out
        return await self._run(work)
