"""The log writer: appends Kafka records as leaves and commits each batch in one transaction.

Order of effects per batch (decision 0041):
1. ``append``: leaves computed, compact range advanced, tiles/entries/positions/due head written
   to Postgres in ONE transaction; the tree is now fixed, whatever happens next.
2. the runner publishes the returned AuditEntryAppended/TreeHeadSigned records;
3. ``flush``: after the broker acknowledged them, ``published_through`` moves forward.
A crash between 1 and 3 leaves committed leaves unpublished; ``recover_outputs`` republishes them
on start with the same deterministic event ids. Source positions come from Postgres
(``positions``), never from the consumer group, so a leaf is never appended twice.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from events import framing
from events.publisher import OutgoingRecord
from events.serde import Serde
from events.topics import TopicNames
from streams.audit.checkpoint import sign_head
from streams.audit.compact import CompactRange
from streams.audit.entry_codec import EntryEncoder
from streams.audit.hashing import partition_leaf_hashes
from streams.audit.store import AuditStore, BatchCommit, Entry, EntryCopyText, EntryRow, Head
from streams.audit.tiles import TileBuilder

log = structlog.get_logger(__name__)

_NS = uuid.UUID("8f5f8f6e-3c1e-5a57-9a59-6d2b7c6a9c62")


def audit_event_id(kind: str, log_id: str, n: int) -> uuid.UUID:
    """Deterministic id of the n-th leaf's AuditEntryAppended / of the head of size n."""
    return uuid.uuid5(_NS, f"{kind}/{log_id}/{n}")


def audit_event_id_str(kind: str, log_id: str, n: int, _ns: bytes = _NS.bytes) -> str:
    """``str(audit_event_id(...))`` without building UUID objects (one per leaf on the hot path)."""
    h = bytearray(hashlib.sha1(_ns + f"{kind}/{log_id}/{n}".encode()).digest()[:16])
    h[6] = (h[6] & 0x0F) | 0x50  # version 5
    h[8] = (h[8] & 0x3F) | 0x80  # RFC 4122 variant
    x = h.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}  # RFC 4122 variant nibble


class LeafEventIds:
    """``audit_event_id_str("leaf", log_id, n)`` for many n: the SHA-1 of the common prefix is taken once."""

    def __init__(self, log_id: str) -> None:
        self._base = hashlib.sha1(_NS.bytes + f"leaf/{log_id}/".encode())

    def __call__(self, n: int) -> str:
        h = self._base.copy()
        h.update(b"%d" % n)
        x = h.hexdigest()
        return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{_VARIANT[x[16]]}{x[17:20]}-{x[20:32]}"

    def ascii_range(self, start: int, n: int) -> list[bytes]:
        """``[self(i).encode() for i in range(start, start + n)]`` without a call per id."""
        copy, v = self._base.copy, _VARIANT
        out = []
        for i in range(start, start + n):
            h = copy()
            h.update(b"%d" % i)
            x = h.hexdigest()
            out.append(f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{v[x[16]]}{x[17:20]}-{x[20:32]}".encode())
        return out


_is_uuid = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}").fullmatch


@dataclass
class PreparedBatch:
    """A batch ready to commit: the rows and the writer state after it, and what to publish once committed."""

    commit: BatchCommit
    cr: CompactRange
    tiles: TileBuilder
    positions: dict[tuple[str, int], int]
    outputs: list[OutgoingRecord]
    head_mono: float


def _by_partition(records: Iterable[Any]) -> dict[tuple[str, int], list[Any]]:
    """Records per (topic, partition), each list in offset order (stable: equal offsets keep their order)."""
    out: dict[tuple[str, int], list[Any]] = {}
    for r in records:
        tp = (r.topic, r.partition)
        lst = out.get(tp)
        if lst is None:
            out[tp] = [r]
        else:
            lst.append(r)
    for lst in out.values():
        last = -1 << 63
        for r in lst:
            if r.offset < last:
                lst.sort(key=_offset)
                break
            last = r.offset
    return out


def _offset(r: Any) -> int:
    return r.offset


class AuditWriter:
    def __init__(
        self,
        store: AuditStore,
        key_pair: Any,
        serde: Serde,
        topics: TopicNames,
        *,
        log_id: str,
        head_every_entries: int,
        head_every_s: float,
        source: str = "qi-audit",
    ) -> None:
        self._store = store
        self._key_pair = key_pair
        self._serde = serde
        self._topics = topics
        self.log_id = log_id
        self._head_n = head_every_entries
        self._head_s = head_every_s
        self._source = source
        self._audit_topic = topics.topic("audit")
        self._key = log_id.encode()
        self._cr = CompactRange()
        self._encoder: EntryEncoder | None = None
        self._leaf_ids = LeafEventIds(log_id)
        self._reloaded_after_error = False

    async def start(self) -> None:
        self._encoder = self._entry_encoder()
        await self._store.start()
        await self._reload()

    async def reload(self) -> None:
        """Load the committed state again (another writer may have advanced the tree)."""
        await self._reload()

    async def _reload(self) -> None:
        s = await self._store.load()
        self._cr = CompactRange.from_bytes(s.tree_size, s.compact)
        self._tiles = TileBuilder(s.partial_tiles)
        self._positions = dict(s.positions)
        self._published_through = s.published_through  # acknowledged through (ahead of the store's)
        self._marked_through = s.published_through  # what the store knows
        self._last_head_size = s.last_head_size
        self._last_head_mono = time.monotonic()
        self._pending_heads: list[int] = []  # acknowledged heads the store does not know as published
        self._unacked_heads: list[int] = []  # committed by ``append``, acknowledged at ``flush``
        self._ticker_heads: list[int] = []
        self._set_tip(self._cr, self._tiles, self._positions, self._last_head_mono)

    def _set_tip(self, cr: CompactRange, tiles: TileBuilder, positions: dict[tuple[str, int], int],
                 head_mono: float) -> None:
        """The state after the last *prepared* batch: what the next ``prepare`` builds on."""
        self._tip = (cr, tiles, positions, head_mono)

    @property
    def tree_size(self) -> int:
        return self._cr.size

    def root(self) -> bytes:
        return self._cr.root()

    @property
    def head_age_s(self) -> float:
        """Seconds since the last tree head was signed (or, before the first, since this writer loaded)."""
        return time.monotonic() - self._last_head_mono

    @property
    def unsigned_leaves(self) -> int:
        """Leaves appended since the last signed head."""
        return self._cr.size - self._last_head_size

    def positions(self) -> dict[tuple[str, int], int]:
        """Next offset to read per (topic, partition), as committed with the tree."""
        return dict(self._positions)

    def canonical_topic(self, topic: str) -> str:
        p = self._topics.prefix
        return topic[len(p):] if p and topic.startswith(p) else topic

    async def append(self, records: Iterable[Any], *, now: datetime | None = None) -> list[OutgoingRecord]:
        """Append records (``ConsumedRecord``-like) not yet in the tree; return what to publish.

        ``prepare`` + ``commit_prepared`` in one call; the caller publishes, then ``flush``es."""
        recovered = await self.take_recovered()
        prepared = self.prepare(records, now=now)
        if prepared is None:
            return recovered
        await self.commit_prepared(prepared)
        self._unacked_heads.extend(h.tree_size for h in prepared.commit.heads)
        return recovered + prepared.outputs

    async def take_recovered(self) -> list[OutgoingRecord]:
        """After a failed commit: the outputs of every committed leaf since ``published_through``.

        A failed commit may have reached Postgres anyway (the connection died after COMMIT): its
        leaves are in the tree now, so a retried batch skips them; their events are published here."""
        if not self._reloaded_after_error:
            return []
        recovered = await self.recover_outputs()
        self._reloaded_after_error = False
        return recovered

    def prepare(self, records: Iterable[Any], *, now: datetime | None = None,
                ids_checked: bool = False) -> PreparedBatch | None:
        """Leaves, tree, tiles, rows, due heads and output events of a batch, built on the state
        after the last prepared batch (the *tip*), which it advances; nothing is written. None if
        every record is already a leaf. Prepared batches must be committed in the order prepared.

        ``ids_checked``: every ``record["event_id"]`` is None or a UUID string already (the serde's
        ``decode_envelope`` checked it: the audit worker's records), so it is not checked again."""
        now = now or datetime.now(UTC)
        tip_cr, tip_tiles, tip_positions, head_mono = self._tip
        expected = tip_cr.size
        cr = tip_cr.copy()
        tiles = tip_tiles.snapshot()
        positions = dict(tip_positions)
        rows: list[EntryRow] = []
        leaves: list[bytes] = []  # the rows' leaf hashes, in leaf order
        completed: list[tuple[int, int, bytes]] = []  # every node above the leaves the batch completes, in order
        heads: list[Head] = []
        canonical: dict[tuple[str, int], str] = {}
        is_id = _is_uuid
        # the COPY text of the entries, a line with each row (decision 0146): the same text as
        # ``entries_copy_text``, without a second pass over the rows
        ct = EntryCopyText(self.log_id, now)
        lines: list[str] = []
        line, head, tail, esc, escaped, null = lines.append, ct.head, ct.tail, ct.esc, ct.escaped, ct.NULL
        row = rows.append
        # per partition, in (topic, partition, offset) order (a stable sort's order, without a key
        # tuple per record): the fresh records, their leaf hashes and rows, a partition at a time
        for tp, recs in sorted(_by_partition(records).items()):
            topic, part = tp
            nxt = positions.get(tp, 0)
            fresh = []
            for r in recs:
                if r.offset >= nxt:  # else already a leaf (redelivered)
                    fresh.append(r)
                    nxt = r.offset + 1
            if not fresh:
                continue
            c = canonical[tp] = self.canonical_topic(topic)
            index = expected + len(rows)
            mid = ct.topic_partition(topic, part)
            lhs = partition_leaf_hashes(c, part, fresh)
            leaves += lhs
            for r, lh in zip(fresh, lhs):
                d, o = r.decoded, r.offset
                if d is None:
                    eid = etype = None
                else:
                    etype, eid = d.event_type, d.record.get("event_id")
                    if not ids_checked and eid is not None and not (type(eid) is str and is_id(eid)):
                        eid = str(eid)  # a UUID (logical decode); anything else is not an event id
                        eid = eid if is_id(eid) else None
                row((index, topic, part, o, eid, etype, lh))
                et = esc.get(etype)
                if et is None:
                    et = escaped(etype)
                line(f"{head}{index}{mid}{o}\t{eid or null}\t{et}\t\\\\x{lh.hex()}{tail}")
                index += 1
            positions[tp] = nxt
        if not rows:
            return None
        tiles.add_leaves(expected, leaves)
        head_n = self._head_n
        done = 0
        while done < len(leaves):  # the tree, up to each multiple of N: heads at sizes an auditor can predict
            upto = min(len(leaves), done + head_n - cr.size % head_n)
            cr.extend(leaves[done:upto] if done or upto < len(leaves) else leaves, completed, note_leaves=False)
            done = upto
            if cr.size % head_n == 0:
                heads.append(sign_head(self._key_pair, self.log_id, cr.size, cr.root(), now))
        if cr.size % self._head_n and time.monotonic() - head_mono >= self._head_s:
            heads.append(sign_head(self._key_pair, self.log_id, cr.size, cr.root(), now))
        tiles.add(completed)
        batch = BatchCommit(expected, cr.size, cr.to_bytes(), tiles.take_dirty(), rows,
                            {k: v for k, v in positions.items() if v != tip_positions.get(k)}, heads, now,
                            copy_text="".join(lines))
        outputs = self._entry_records(rows, now, canonical) + [self._head_record(h) for h in heads]
        if heads:
            head_mono = time.monotonic()
        self._set_tip(cr, tiles, positions, head_mono)
        return PreparedBatch(batch, cr, tiles, positions, outputs, head_mono)

    async def commit_prepared(self, p: PreparedBatch) -> None:
        """Write a prepared batch in one transaction (with the acknowledgements noted since the
        last write); on failure the writer reloads the committed state, dropping every prepared
        batch, and raises."""
        p.commit.published_through = self._published_through if self._published_through > self._marked_through \
            else None
        p.commit.published_heads = list(self._pending_heads)
        try:
            await self._store.commit(p.commit)
        except Exception:
            await self._safe_reload()
            raise
        if p.commit.published_through is not None:
            self._marked_through = p.commit.published_through
        del self._pending_heads[:len(p.commit.published_heads)]
        self._cr, self._tiles, self._positions = p.cr, p.tiles, p.positions
        if p.commit.heads:
            self._last_head_size, self._last_head_mono = p.commit.heads[-1].tree_size, p.head_mono

    def acked(self, p: PreparedBatch) -> None:
        """The broker acknowledged a committed batch's outputs (noted in Postgres with a later write)."""
        self._published_through = max(self._published_through, p.commit.tree_size)
        self._pending_heads.extend(h.tree_size for h in p.commit.heads)

    async def _safe_reload(self) -> None:
        self._reloaded_after_error = True
        try:
            await self._reload()
        except Exception as e:  # the store is down: the next append reloads or fails again
            log.warning("audit.reload_failed", error=str(e))

    def head_due(self) -> bool:
        """Leaves not covered by a head, ``head_every_s`` after the last one (prepared batches included)."""
        return (self._tip[0].size != self._last_head_size or self._cr.size != self._last_head_size) \
            and time.monotonic() - max(self._last_head_mono, self._tip[3]) >= self._head_s

    async def sign_if_due(self, now: datetime | None = None) -> list[OutgoingRecord]:
        """A head for leaves not yet covered, once ``head_every_s`` passed (idle logs get heads too).
        Only with no prepared batch uncommitted (the processor drains its pipeline first)."""
        size = self._cr.size
        if size == self._last_head_size or time.monotonic() - self._last_head_mono < self._head_s:
            return []
        if self._tip[0] is not self._cr:
            raise RuntimeError("sign_if_due with prepared batches not committed")
        head = sign_head(self._key_pair, self.log_id, size, self._cr.root(), now)
        try:
            await self._store.commit(BatchCommit(size, size, self._cr.to_bytes(), {}, [], {}, [head]))
        except Exception:
            await self._safe_reload()
            raise
        self._last_head_size, self._last_head_mono = size, time.monotonic()
        self._set_tip(self._cr, self._tiles, self._positions, self._last_head_mono)
        self._ticker_heads.append(size)
        return [self._head_record(head)]

    async def mark_ticker_heads_published(self) -> None:
        self._pending_heads.extend(self._ticker_heads)
        self._ticker_heads = []
        await self.write_marks()

    async def flush(self) -> None:
        """The outputs of every ``append`` so far are acknowledged: remember it (in Postgres)."""
        self._published_through = max(self._published_through, self._cr.size)
        self._pending_heads.extend(self._unacked_heads)
        self._unacked_heads = []
        await self.write_marks()

    async def write_marks(self) -> None:
        """Write the acknowledgements not yet in Postgres (``acked``/``flush``) on their own."""
        if self._published_through == self._marked_through and not self._pending_heads:
            return
        through, heads = self._published_through, list(self._pending_heads)
        await self._store.mark_published(through, heads)
        self._marked_through = max(self._marked_through, through)
        del self._pending_heads[:len(heads)]

    async def recover_outputs(self) -> list[OutgoingRecord]:
        """Committed but possibly unpublished leaves and heads (after a crash), to publish again."""
        entries = await self._store.entries(self._published_through, self._cr.size)
        heads = await self._store.heads(unpublished_only=True)
        self._unacked_heads = [h.tree_size for h in heads]  # marked by ``flush`` once published
        return [self._entry_record(e) for e in entries] + [self._head_record(h) for h in heads]

    # ---------------------------------------------------------------- events

    def _entry_encoder(self) -> EntryEncoder | None:
        """The hand-written encoder if it matches the serde byte for byte on a sample, else None."""
        enc = EntryEncoder(framing.header(self._serde.schema_id("AuditEntryAppended")), self._source, self.log_id)
        sample = Entry(7, "qi.twins.v1", 2, 300, str(uuid.UUID(int=5)), "TwinRegistered", bytes(range(32)),
                       datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC))
        return enc if self._encode_entry(enc, sample) == self._encode_entry(None, sample) else None

    def _encode_entry(self, enc: EntryEncoder | None, e: Entry) -> bytes:
        eid = self._leaf_ids(e.leaf_index)
        topic = self.canonical_topic(e.source_topic)
        if enc is not None:
            return enc.encode(eid, e.appended_at, e.source_event_id, e.leaf_index, e.leaf_hash, topic,
                              e.source_partition, e.source_offset, e.source_event_id, e.source_event_type)
        return self._serde.encode("AuditEntryAppended", {
            "event_id": eid, "event_type": "AuditEntryAppended", "occurred_at": e.appended_at,
            "recorded_at": e.appended_at, "source": self._source, "correlation_id": None,
            "causation_id": e.source_event_id, "log_id": self.log_id, "leaf_index": e.leaf_index,
            "leaf_hash": e.leaf_hash, "source_topic": topic,
            "source_partition": e.source_partition, "source_offset": e.source_offset,
            "source_event_id": e.source_event_id, "source_event_type": e.source_event_type,
        })

    def _entry_record(self, e: Entry) -> OutgoingRecord:
        value = self._encode_entry(self._encoder, e)
        return OutgoingRecord(self._audit_topic, self._key, value, None)

    def _entry_records(self, rows: list[EntryRow], at: datetime,
                       canonical: dict[tuple[str, int], str]) -> list[OutgoingRecord]:
        """One AuditEntryAppended per fresh leaf (the hot path of ``_entry_record``)."""
        enc = self._encoder
        if enc is None:  # the schema changed: the serde's encoder, one Entry at a time
            return [self._entry_record(Entry(*row, at)) for row in rows]
        topic, key = self._audit_topic, self._key
        return [OutgoingRecord(topic, key, v, None) for v in enc.encode_rows(rows, at, self._leaf_ids, canonical)]

    def _head_record(self, h: Head) -> OutgoingRecord:
        eid = audit_event_id("head", self.log_id, h.tree_size)
        value = self._serde.encode("TreeHeadSigned", {
            "event_id": eid, "event_type": "TreeHeadSigned", "occurred_at": h.signed_at,
            "recorded_at": h.signed_at, "source": self._source, "correlation_id": None, "causation_id": None,
            "log_id": self.log_id, "tree_size": h.tree_size, "root_hash": h.root,
            "signatures": [{"key_id": s["key_id"], "algorithm": s["algorithm"], "value": bytes.fromhex(s["value"])}
                           for s in h.signatures],
        })
        return OutgoingRecord(self._audit_topic, self._key, value, str(eid))

    async def close(self) -> None:
        await self._store.close()
