"""Postgres storage of the log: state, tiles, entries, heads and source positions.

Everything one batch changes is written in ONE transaction (decision 0040): the compact range
and size, the changed tiles, one entry row per leaf, the source positions after the batch and a
signed head if one was due. The size update is conditional on the size we loaded, so a second
writer can never fork the tree (:class:`WriterConflict`).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
import structlog
from psycopg import sql

from streams.audit.errors import AuditStoreError, WriterConflict
from streams.audit.tiles import TileNodes

log = structlog.get_logger(__name__)

_DDL = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.logs (
    log_id text PRIMARY KEY,
    tree_size bigint NOT NULL,
    compact bytea NOT NULL,
    published_through bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {schema}.positions (
    log_id text NOT NULL, topic text NOT NULL, partition int NOT NULL, next_offset bigint NOT NULL,
    PRIMARY KEY (log_id, topic, partition)
);
CREATE TABLE IF NOT EXISTS {schema}.tiles (
    log_id text NOT NULL, level smallint NOT NULL, idx bigint NOT NULL, width smallint NOT NULL,
    hashes bytea NOT NULL,
    PRIMARY KEY (log_id, level, idx)
);
CREATE TABLE IF NOT EXISTS {schema}.entries (
    log_id text NOT NULL, leaf_index bigint NOT NULL,
    source_topic text NOT NULL, source_partition int NOT NULL, source_offset bigint NOT NULL,
    source_event_id uuid, source_event_type text, leaf_hash bytea NOT NULL,
    appended_at timestamptz NOT NULL,
    PRIMARY KEY (log_id, leaf_index)
);
CREATE INDEX IF NOT EXISTS entries_by_event ON {schema}.entries (log_id, source_event_id);
CREATE TABLE IF NOT EXISTS {schema}.heads (
    log_id text NOT NULL, tree_size bigint NOT NULL, root bytea NOT NULL,
    signatures jsonb NOT NULL, note text NOT NULL, signed_at timestamptz NOT NULL,
    published boolean NOT NULL DEFAULT false,
    PRIMARY KEY (log_id, tree_size)
);
"""


@dataclass
class LoadedState:
    tree_size: int
    compact: bytes
    published_through: int
    positions: dict[tuple[str, int], int]
    partial_tiles: dict[tuple[int, int], bytes]
    last_head_size: int
    last_head_at: datetime | None


@dataclass
class Entry:
    leaf_index: int
    source_topic: str
    source_partition: int
    source_offset: int
    source_event_id: str | None
    source_event_type: str | None
    leaf_hash: bytes
    appended_at: datetime


@dataclass
class Head:
    tree_size: int
    root: bytes
    signatures: list[dict[str, Any]]  # {"key_id", "algorithm", "value" (hex)}
    note: str
    signed_at: datetime
    published: bool = False


#: One fresh leaf of a batch: (leaf_index, source_topic, source_partition, source_offset,
#: source_event_id (a UUID string) or None, source_event_type or None, leaf_hash).
EntryRow = tuple[int, str, int, int, str | None, str | None, bytes]


@dataclass
class BatchCommit:
    expected_size: int
    tree_size: int
    compact: bytes
    tiles: dict[tuple[int, int], bytes]
    entries: list[EntryRow]
    positions: dict[tuple[str, int], int]
    heads: list[Head] = field(default_factory=list)
    appended_at: datetime | None = None  # of every entry; required when there are entries
    published_through: int | None = None  # acknowledgements of earlier batches, noted in the same write
    published_heads: list[int] = field(default_factory=list)
    #: ``entries_copy_text(log_id, entries, appended_at)``, if the writer built it with the rows
    #: (:class:`EntryCopyText`); else the store builds it
    copy_text: str | None = None


def _copy_text(s: str) -> str:
    """A value in COPY's text format (backslash escapes)."""
    return s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def entries_copy_text(log_id: str, rows: list[EntryRow], appended_at: datetime) -> str:
    """The COPY text of ``rows`` (one write for the batch instead of one ``write_row`` per leaf).

    Event ids are UUID strings (the writer checks them) or NULL; topic and event-type strings are
    escaped once per distinct value."""
    esc: dict[str | None, str] = {None: "\\N"}

    def e(s: str | None) -> str:
        v = esc.get(s)
        if v is None:
            v = esc[s] = _copy_text(s)  # type: ignore[arg-type]
        return v

    tail = "\t" + appended_at.isoformat() + "\n"
    head = e(log_id) + "\t"
    null = "\\N"
    return "".join([
        f"{head}{i}\t{e(t)}\t{p}\t{o}\t{eid or null}\t{e(et)}\t\\\\x{lh.hex()}{tail}"
        for i, t, p, o, eid, et, lh in rows
    ])


class EntryCopyText:
    r"""The parts of :func:`entries_copy_text`'s lines that are constant per batch and per partition,
    for a writer that builds each line with its row (one pass over the batch, decision 0146)::

        f"{head}{leaf_index}{mid}{source_offset}\t{event_id or NULL}\t{esc[event_type]}\t\\\\x{leaf_hash.hex()}{tail}"

    with ``mid = topic_partition(topic, partition)`` and ``esc[t]`` from ``escaped(t)`` (cached in ``esc``);
    the text is the same as ``entries_copy_text`` (tests/streams/audit/test_entry_codec.py)."""

    NULL = "\\N"

    def __init__(self, log_id: str, appended_at: datetime) -> None:
        self.esc: dict[str | None, str] = {None: self.NULL}
        self.head = self.escaped(log_id) + "\t"
        self.tail = "\t" + appended_at.isoformat() + "\n"

    def escaped(self, s: str | None) -> str:
        v = self.esc.get(s)
        if v is None:
            v = self.esc[s] = _copy_text(s)  # type: ignore[arg-type]
        return v

    def topic_partition(self, topic: str, partition: int) -> str:
        return f"\t{self.escaped(topic)}\t{partition}\t"


class AuditStore:
    """One log's rows in Postgres. ``start()`` connects and creates the tables."""

    def __init__(self, dsn: str, log_id: str, *, schema: str = "audit") -> None:
        self._dsn = dsn
        self.log_id = log_id
        self._schema = schema
        self._conn: psycopg.AsyncConnection | None = None
        # the writer's transactions on ``_conn`` never interleave (the audit worker commits one batch
        # while it publishes another, decision 0140)
        self._write_lock = asyncio.Lock()
        self._rconn: psycopg.AsyncConnection | None = None
        self.tile_nodes = TileNodes()  # the nodes of the tiles proofs read last
        self._rendered: dict[str, str] = {}

    def _q(self, text: str) -> str:
        """``text`` with ``{schema}`` filled in, rendered once per text (a proof is ~1 ms of client
        CPU; composing its query again each time was a fifth of it)."""
        q = self._rendered.get(text)
        if q is None:
            q = self._rendered[text] = sql.SQL(text).format(schema=sql.Identifier(self._schema)).as_string(None)
        return q

    @property
    def conn(self) -> psycopg.AsyncConnection:
        if self._conn is None:
            raise AuditStoreError("audit store not started", retriable=False)
        return self._conn

    async def start(self) -> None:
        try:
            self._conn = await psycopg.AsyncConnection.connect(self._dsn, autocommit=False)
            async with self._conn.transaction():
                await self._conn.execute("SELECT pg_advisory_xact_lock(6962)")
                await self._conn.execute(self._q(_DDL))
                await self._conn.execute(
                    self._q("INSERT INTO {schema}.logs (log_id, tree_size, compact, published_through) "
                            "VALUES (%s, 0, '', 0) ON CONFLICT DO NOTHING"), (self.log_id,))
        except psycopg.OperationalError as e:
            raise AuditStoreError(f"cannot reach Postgres: {e}", retriable=True) from e

    async def close(self) -> None:
        if self._rconn is not None:
            await self._rconn.close()
            self._rconn = None
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def _live(self) -> psycopg.AsyncConnection:
        """The connection, reconnected if Postgres dropped it (a restart, a network blip)."""
        if self._conn is None:
            raise AuditStoreError("audit store not started", retriable=False)
        if self._conn.closed:
            try:
                self._conn = await psycopg.AsyncConnection.connect(self._dsn, autocommit=False)
            except psycopg.OperationalError as e:
                raise AuditStoreError(f"cannot reach Postgres: {e}", retriable=True) from e
        return self._conn

    async def load(self) -> LoadedState:
        try:
            async with self._write_lock:
                return await self._load(await self._live())
        except psycopg.Error as e:
            raise AuditStoreError(f"cannot load the audit log: {e}", retriable=True) from e

    async def _load(self, c: psycopg.AsyncConnection) -> LoadedState:
        from streams.audit.tiles import TileBuilder

        async with c.transaction():
            cur = await c.execute(self._q(
                "SELECT tree_size, compact, published_through FROM {schema}.logs WHERE log_id = %s"),
                (self.log_id,))
            size, compact, published = await cur.fetchone()
            cur = await c.execute(self._q(
                "SELECT topic, partition, next_offset FROM {schema}.positions WHERE log_id = %s"), (self.log_id,))
            positions = {(t, p): o for t, p, o in await cur.fetchall()}
            partial = {}
            for level, idx, width in TileBuilder.partial_tiles_of(size):
                cur = await c.execute(self._q(
                    "SELECT hashes FROM {schema}.tiles WHERE log_id = %s AND level = %s AND idx = %s"),
                    (self.log_id, level, idx))
                row = await cur.fetchone()
                partial[(level, idx)] = bytes(row[0])[: width * 32]
            cur = await c.execute(self._q(
                "SELECT tree_size, signed_at FROM {schema}.heads WHERE log_id = %s "
                "ORDER BY tree_size DESC LIMIT 1"), (self.log_id,))
            head = await cur.fetchone()
        return LoadedState(size, bytes(compact), published, positions, partial,
                           head[0] if head else 0, head[1] if head else None)

    async def commit(self, batch: BatchCommit) -> None:
        """Write one batch atomically; raises WriterConflict if the tree moved under us.

        Every database error is retriable: the audit log stalls (and says so) rather than skip a leaf.
        """
        async with self._write_lock:
            await self._commit(batch)

    async def _commit(self, batch: BatchCommit) -> None:
        c = await self._live()
        try:
            async with c.transaction():
                cur = await c.execute(self._q(
                    "UPDATE {schema}.logs SET tree_size = %s, compact = %s, updated_at = now(), "
                    "published_through = GREATEST(published_through, %s) "
                    "WHERE log_id = %s AND tree_size = %s"),
                    (batch.tree_size, batch.compact, batch.published_through or 0, self.log_id,
                     batch.expected_size))
                if cur.rowcount != 1:
                    found = await c.execute(self._q("SELECT tree_size FROM {schema}.logs WHERE log_id = %s"),
                                            (self.log_id,))
                    raise WriterConflict(self.log_id, batch.expected_size, (await found.fetchone())[0])
                async with c.cursor() as cur:
                    await cur.executemany(self._q(
                        "INSERT INTO {schema}.tiles (log_id, level, idx, width, hashes) VALUES (%s, %s, %s, %s, %s) "
                        "ON CONFLICT (log_id, level, idx) DO UPDATE SET width = excluded.width, "
                        "hashes = excluded.hashes WHERE {schema}.tiles.width < excluded.width"),
                        [(self.log_id, lvl, idx, len(h) // 32, h) for (lvl, idx), h in batch.tiles.items()])
                    await cur.executemany(self._q(
                        "INSERT INTO {schema}.positions (log_id, topic, partition, next_offset) VALUES (%s, %s, %s, %s) "
                        "ON CONFLICT (log_id, topic, partition) DO UPDATE SET next_offset = excluded.next_offset"),
                        [(self.log_id, t, p, o) for (t, p), o in batch.positions.items()])
                    if batch.entries:
                        if batch.appended_at is None:
                            raise ValueError("a batch with entries needs appended_at")
                        async with cur.copy(self._q(
                            "COPY {schema}.entries (log_id, leaf_index, source_topic, source_partition, "
                            "source_offset, source_event_id, source_event_type, leaf_hash, appended_at) "
                            "FROM STDIN")) as copy:
                            text = batch.copy_text
                            await copy.write(entries_copy_text(self.log_id, batch.entries, batch.appended_at)
                                             if text is None else text)
                    for h in batch.heads:
                        await cur.execute(self._q(
                            "INSERT INTO {schema}.heads (log_id, tree_size, root, signatures, note, signed_at) "
                            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"),
                            (self.log_id, h.tree_size, h.root, json.dumps(h.signatures), h.note, h.signed_at))
                    if batch.published_heads:
                        await cur.execute(self._q(
                            "UPDATE {schema}.heads SET published = true WHERE log_id = %s AND tree_size = ANY(%s)"),
                            (self.log_id, batch.published_heads))
        except psycopg.Error as e:
            raise AuditStoreError(f"audit commit failed: {e}", retriable=True) from e

    async def mark_published(self, through: int, head_sizes: list[int]) -> None:
        async with self._write_lock:
            await self._mark_published(through, head_sizes)

    async def _mark_published(self, through: int, head_sizes: list[int]) -> None:
        c = await self._live()
        try:
            async with c.transaction():
                await c.execute(self._q(
                    "UPDATE {schema}.logs SET published_through = GREATEST(published_through, %s) WHERE log_id = %s"),
                    (through, self.log_id))
                if head_sizes:
                    await c.execute(self._q(
                        "UPDATE {schema}.heads SET published = true WHERE log_id = %s AND tree_size = ANY(%s)"),
                        (self.log_id, head_sizes))
        except psycopg.Error as e:
            raise AuditStoreError(f"audit bookkeeping failed: {e}", retriable=True) from e

    # ---------------------------------------------------------------- reads

    async def _reader(self) -> psycopg.AsyncConnection:
        """A second connection, in autocommit, for reads: one round trip per query (no transaction
        to end), and reads never wait for (or interleave with) the writer's transaction."""
        if self._conn is None:
            raise AuditStoreError("audit store not started", retriable=False)
        r = self._rconn
        if r is None or r.closed:
            try:
                r = self._rconn = await psycopg.AsyncConnection.connect(self._dsn, autocommit=True)
            except psycopg.OperationalError as e:
                raise AuditStoreError(f"cannot reach Postgres: {e}", retriable=True) from e
        return r

    async def entries(self, start: int, end: int) -> list[Entry]:
        cur = await (await self._reader()).execute(self._q(
            "SELECT leaf_index, source_topic, source_partition, source_offset, source_event_id::text, "
            "source_event_type, leaf_hash, appended_at FROM {schema}.entries "
            "WHERE log_id = %s AND leaf_index >= %s AND leaf_index < %s ORDER BY leaf_index"),
            (self.log_id, start, end))
        rows = await cur.fetchall()
        return [Entry(r[0], r[1], r[2], r[3], r[4], r[5], bytes(r[6]), r[7]) for r in rows]

    async def entry_for_event(self, event_id: str) -> Entry | None:
        cur = await (await self._reader()).execute(self._q(
            "SELECT leaf_index, source_topic, source_partition, source_offset, source_event_id::text, "
            "source_event_type, leaf_hash, appended_at FROM {schema}.entries "
            "WHERE log_id = %s AND source_event_id = %s ORDER BY leaf_index LIMIT 1"), (self.log_id, event_id))
        r = await cur.fetchone()
        return Entry(r[0], r[1], r[2], r[3], r[4], r[5], bytes(r[6]), r[7]) if r else None

    async def inclusion_material(
        self, event_id: str,
    ) -> tuple[Entry, int | None, str | None, dict[tuple[int, int], bytes]] | None:
        """What ``prove`` needs, in one round trip: the event's entry, the latest head's size and
        signed note, and the tiles :func:`~streams.audit.tiles.proof_tiles` names for them (per tile
        level the tile on the leaf's path and the one at the head's right edge). None: no such event."""
        cur = await (await self._reader()).execute(self._q(
            "SELECT e.leaf_index, e.source_topic, e.source_partition, e.source_offset, e.source_event_id::text, "
            "e.source_event_type, e.leaf_hash, e.appended_at, h.tree_size, h.note, t.levels, t.idxs, t.hashes "
            "FROM {schema}.entries e "
            "LEFT JOIN LATERAL (SELECT tree_size, note FROM {schema}.heads WHERE log_id = %(log)s "
            "ORDER BY tree_size DESC LIMIT 1) h ON true "
            "LEFT JOIN LATERAL (SELECT array_agg(ti.level) AS levels, array_agg(ti.idx) AS idxs, "
            "array_agg(ti.hashes) AS hashes FROM {schema}.tiles ti WHERE ti.log_id = %(log)s "
            "AND (ti.level, ti.idx) IN (SELECT w.t, w.n >> (8 * w.t + 8) FROM generate_series(0, 7) s(t) "
            "CROSS JOIN LATERAL (VALUES (s.t, e.leaf_index), (s.t, h.tree_size)) w(t, n) "
            "WHERE h.tree_size >> (8 * s.t) > 0)) t ON true "
            "WHERE e.log_id = %(log)s AND e.source_event_id = %(event)s ORDER BY e.leaf_index LIMIT 1"),
            {"log": self.log_id, "event": event_id}, binary=True)  # binary: the tiles' bytes as they are
        r = await cur.fetchone()
        if r is None:
            return None
        tiles = {(lvl, idx): bytes(h) for lvl, idx, h in zip(r[10] or (), r[11] or (), r[12] or (), strict=True)}
        return Entry(r[0], r[1], r[2], r[3], r[4], r[5], bytes(r[6]), r[7]), r[8], r[9], tiles

    async def tiles(self, wanted: set[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        if not wanted:
            return {}
        # primary-key probes from two arrays: one statement text, so the server plans it once
        levels, idxs = zip(*sorted(wanted), strict=True)
        cur = await (await self._reader()).execute(self._q(
            "SELECT ti.level, ti.idx, ti.hashes FROM {schema}.tiles ti "
            "JOIN unnest(%s::smallint[], %s::bigint[]) w(level, idx) ON ti.level = w.level AND ti.idx = w.idx "
            "WHERE ti.log_id = %s"), (list(levels), list(idxs), self.log_id), binary=True)
        rows = await cur.fetchall()
        return {(lvl, idx): bytes(h) for lvl, idx, h in rows}

    async def all_tiles(self) -> list[tuple[int, int, bytes]]:
        cur = await (await self._reader()).execute(self._q(
            "SELECT level, idx, hashes FROM {schema}.tiles WHERE log_id = %s ORDER BY level, idx"), (self.log_id,))
        rows = await cur.fetchall()
        return [(lvl, idx, bytes(h)) for lvl, idx, h in rows]

    async def heads(self, *, unpublished_only: bool = False) -> list[Head]:
        cur = await (await self._reader()).execute(self._q(
            "SELECT tree_size, root, signatures, note, signed_at, published FROM {schema}.heads "
            "WHERE log_id = %s" + (" AND NOT published" if unpublished_only else "") + " ORDER BY tree_size"),
            (self.log_id,))
        rows = await cur.fetchall()
        return [Head(r[0], bytes(r[1]), r[2], r[3], r[4], r[5]) for r in rows]

    async def head_at_least(self, size: int) -> Head | None:
        cur = await (await self._reader()).execute(self._q(
            "SELECT tree_size, root, signatures, note, signed_at, published FROM {schema}.heads "
            "WHERE log_id = %s AND tree_size >= %s ORDER BY tree_size LIMIT 1"), (self.log_id, size))
        r = await cur.fetchone()
        return Head(r[0], bytes(r[1]), r[2], r[3], r[4], r[5]) if r else None

    async def latest_head(self) -> Head | None:
        cur = await (await self._reader()).execute(self._q(
            "SELECT tree_size, root, signatures, note, signed_at, published FROM {schema}.heads "
            "WHERE log_id = %s ORDER BY tree_size DESC LIMIT 1"), (self.log_id,))
        r = await cur.fetchone()
        return Head(r[0], bytes(r[1]), r[2], r[3], r[4], r[5]) if r else None

    async def head(self, size: int) -> Head | None:
        cur = await (await self._reader()).execute(self._q(
            "SELECT tree_size, root, signatures, note, signed_at, published FROM {schema}.heads "
            "WHERE log_id = %s AND tree_size = %s"), (self.log_id, size))
        r = await cur.fetchone()
        return Head(r[0], bytes(r[1]), r[2], r[3], r[4], r[5]) if r else None
