"""``qi audit verify``: re-read the source topics and the audit topic, recompute everything.

Independent of the writer and of Postgres: it uses only the Kafka topics, the hash definitions,
the verifier and the log's public key. Leaves are recomputed from the source records at the
(topic, partition, offset) each AuditEntryAppended names, in leaf order; the root is recomputed at
every TreeHeadSigned size and both of its signatures checked. The first divergence, in leaf
order, is named: which leaf, which source record, which head.

Two passes over what was read (decision 0141): the **clean check** decides with whole-list
comparisons whether every leaf is its source record, each logged once and in order, with no gap
or conflict; then only the heads are left to check, against roots from the tree built a level at
a time. Anything else (a changed, missing, moved, doubled or unlogged record, a gap, a conflict)
goes to the **leaf-by-leaf check**, which finds and names every divergence. Both read the same
columns: the topics are read as raw record batches (:mod:`streams.audit.fetch`), and an
AuditEntryAppended value becomes four fields through one regular expression (:class:`_EntryMatcher`)
or, for a value it does not match, :func:`parse_entry` or the serde.
"""

from __future__ import annotations

import asyncio
import re
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from events.models import Signature
from events.reader import log_end_offsets
from events.serde import Serde
from streams.audit.fetch import Chunk, read_chunks, records
from streams.audit.hashing import EMPTY_ROOT, partition_leaf_hasher
from streams.audit.verifier import (
    RootAccumulator,
    VerificationError,
    note_body,
    root_from_levels,
    tree_levels,
    verify_signatures,
)


@dataclass(frozen=True)
class Divergence:
    kind: str  # leaf_changed, record_missing, record_not_logged, order, leaf_gap, conflict, head_root, head_signature
    detail: str
    leaf_index: int | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    head_size: int | None = None

    def where(self) -> str:
        parts = []
        if self.leaf_index is not None:
            parts.append(f"leaf {self.leaf_index}")
        if self.topic is not None:
            parts.append(f"{self.topic}/{self.partition}@{self.offset}")
        if self.head_size is not None:
            parts.append(f"head of size {self.head_size}")
        return ", ".join(parts)


@dataclass
class VerifyReport:
    leaves: int = 0
    heads: int = 0
    source_records: int = 0
    not_yet_logged: int = 0
    seconds: float = 0.0
    divergences: list[Divergence] = field(default_factory=list)
    leaf_by_leaf: bool = False  # the clean check did not hold: every leaf was checked on its own

    @property
    def ok(self) -> bool:
        return not self.divergences

    @property
    def first(self) -> Divergence | None:
        return self.divergences[0] if self.divergences else None


async def read_raw(bootstrap: str, topics: list[str], on_message: Callable[[Any], None]) -> int:
    """Every record of ``topics`` up to the log end as it was when called; returns the count."""
    def each(_tp: TopicPartition, msgs: list) -> None:
        for m in msgs:
            on_message(m)

    return await read_batches(bootstrap, topics, each)


async def read_batches(bootstrap: str, topics: list[str], on_batch: Callable[[TopicPartition, list], None]) -> int:
    """:func:`read_raw` a fetched batch at a time: ``on_batch(tp, records)``, offsets ascending."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                         client_id="qi-audit-verify", max_partition_fetch_bytes=16 * 1024 * 1024,
                         fetch_max_bytes=64 * 1024 * 1024)
    await c.start()
    n = 0
    try:
        known = await c.topics()
        tps = [TopicPartition(t, p) for t in topics if t in known for p in sorted(c.partitions_for_topic(t) or ())]
        if not tps:
            return 0
        c.assign(tps)
        ends = await log_end_offsets(c, tps)
        starts = await c.beginning_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > starts[tp]}
        for tp in tps:
            c.seek(tp, starts[tp])
        while remaining:
            fetched = await c.getmany(*remaining, timeout_ms=500, max_records=50_000)
            for tp, msgs in fetched.items():
                if not msgs:
                    continue
                end = ends[tp]
                if msgs[-1].offset >= end - 1:
                    remaining.discard(tp)
                    msgs = [m for m in msgs if m.offset < end]
                if msgs:
                    on_batch(tp, msgs)
                    n += len(msgs)
    finally:
        await c.stop()
    return n


#: AuditEntryAppended v1, the fields in writer order (checked against the serde per schema id).
_ENTRY_V1 = ["event_id", "event_type", "occurred_at", "recorded_at", "source", "correlation_id", "causation_id",
             "log_id", "leaf_index", "leaf_hash", "source_topic", "source_partition", "source_offset",
             "source_event_id", "source_event_type"]
_HEADER = struct.Struct(">bI")


def _varint(v: bytes, pos: int) -> tuple[int, int]:
    b = v[pos]
    if b < 0x80:
        return b, pos + 1
    n, shift = b & 0x7F, 7
    while True:
        pos += 1
        b = v[pos]
        n |= (b & 0x7F) << shift
        if b < 0x80:
            return n, pos + 1
        shift += 7


def _skip_opt_string(v: bytes, pos: int) -> int:
    if v[pos] == 0:
        return pos + 1
    if v[pos] != 2:
        raise ValueError("bad union branch")
    n, pos = _varint(v, pos + 1)
    return pos + (n >> 1)


_TWO_VARINTS = re.compile(rb"[\x80-\xff]{0,9}[\x00-\x7f][\x80-\xff]{0,9}[\x00-\x7f]", re.DOTALL).match


def parse_entry(v: bytes) -> tuple[bytes, int, bytes, bytes, int, int]:
    """(log_id, leaf_index, leaf_hash, source_topic, source_partition, source_offset) of a framed
    AuditEntryAppended v1, read straight from the Avro bytes (every field is read; ValueError or
    IndexError if they do not make exactly one v1 record; strings are not checked as UTF-8).
    ``verify`` reads one per leaf; fastavro took ~3x as long per record. One-byte lengths, the
    common case, are read inline."""
    vi, opt = _varint, _skip_opt_string
    n = v[5]
    pos = 6 + (n >> 1) if n < 0x80 else (lambda n, p: p + (n >> 1))(*vi(v, 5))  # event_id
    n = v[pos]
    pos = pos + 1 + (n >> 1) if n < 0x80 else (lambda n, p: p + (n >> 1))(*vi(v, pos))  # event_type
    m = _TWO_VARINTS(v, pos)  # occurred_at, recorded_at
    if m is None:
        raise ValueError("bad timestamps")
    pos = m.end()
    n = v[pos]
    pos = pos + 1 + (n >> 1) if n < 0x80 else (lambda n, p: p + (n >> 1))(*vi(v, pos))  # source
    pos = pos + 1 if v[pos] == 0 else opt(v, pos)  # correlation_id
    pos = pos + 1 if v[pos] == 0 else opt(v, pos)  # causation_id
    n = v[pos]
    if n < 0x80:
        pos += 1
    else:
        n, pos = vi(v, pos)
    e = pos + (n >> 1)
    log_id = v[pos:e]
    n, pos = vi(v, e)
    leaf_index = (n >> 1) ^ -(n & 1)
    n = v[pos]
    if n < 0x80:
        pos += 1
    else:
        n, pos = vi(v, pos)
    e = pos + (n >> 1)
    leaf_hash = v[pos:e]
    n = v[e]
    if n < 0x80:
        pos = e + 1
    else:
        n, pos = vi(v, e)
    e = pos + (n >> 1)
    topic = v[pos:e]
    n = v[e]
    if n < 0x80:
        pos = e + 1
    else:
        n, pos = vi(v, e)
    part = (n >> 1) ^ -(n & 1)
    n, pos = vi(v, pos)
    off = (n >> 1) ^ -(n & 1)
    pos = pos + 1 if v[pos] == 0 else opt(v, pos)  # source_event_id
    if (pos + 1 if v[pos] == 0 else opt(v, pos)) != len(v):  # source_event_type, then the end
        raise ValueError("not exactly one AuditEntryAppended v1 record")
    return log_id, leaf_index, leaf_hash, topic, part, off


def _avro_bytes(b: bytes) -> bytes:
    """``b`` as an Avro string/bytes field: its length as a zigzag varint, then the bytes."""
    z = len(b) << 1
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out) + b


def _zigzag(b: bytes) -> int:
    """The Avro long encoded by exactly the varint ``b`` (the same arithmetic as ``parse_entry``)."""
    n = len(b)
    if n == 1:
        x = b[0]
    elif n == 2:
        x = (b[0] & 0x7F) | (b[1] << 7)
    elif n == 3:
        x = (b[0] & 0x7F) | ((b[1] & 0x7F) << 7) | (b[2] << 14)
    else:
        x = 0
        for i, c in enumerate(b):
            x |= (c & 0x7F) << (7 * i)
    return (x >> 1) ^ -(x & 1)


_VARINT = rb"[\x80-\xff]{0,9}[\x00-\x7f]"
_OPT_UUID = rb"(?:\x00|\x02\x48.{36})"  # an optional string: null, or 36 bytes (a UUID's text)


def _no_match(_v: bytes) -> None:
    return None


class _EntryMatcher:
    """One regular expression that fully matches the usual AuditEntryAppended v1 values of one log.

    It is :func:`parse_entry`'s grammar narrowed to what the writer produces: a schema id the serde
    showed to be v1 (``fast``), an event id of 36 bytes, correlation, causation and source event
    ids null or 36 bytes, this log's id, a 32-byte leaf hash, and a source, source topic and source
    event type among literals seen before. Each literal is a whole length-prefixed Avro string and
    every varint ends at its first byte below 0x80, so a match splits the value into exactly the
    fields ``parse_entry`` reads, and a value that matches is one it accepts with the same result.
    A value that does not match goes to ``parse_entry`` (and the serde); the literals of such
    values are learned, a bounded number of times. Groups: leaf index (varint), leaf hash, source
    topic and partition (together: one key per source partition), source offset (varint).
    """

    def __init__(self, log_id: str, topics: Iterable[str]) -> None:
        self._log_id = _avro_bytes(log_id.encode())
        self.schema_ids: set[bytes] = set()
        self.sources: set[bytes] = set()
        self.topics = {_avro_bytes(t.encode()) for t in topics}
        self.types = {b"\x00"}
        self.learnable = 64
        self.fullmatch: Callable[[bytes], re.Match[bytes] | None] = _no_match

    def learn(self, schema_id: int, record: dict[str, Any]) -> None:
        """The literals of one AuditEntryAppended v1 record of this log, decoded by the serde."""
        if self.learnable <= 0:
            return
        t = record["source_event_type"]
        new = (schema_id.to_bytes(4, "big"), _avro_bytes(record["source"].encode()),
               _avro_bytes(record["source_topic"].encode()), b"\x00" if t is None else b"\x02" + _avro_bytes(t.encode()))
        sets = (self.schema_ids, self.sources, self.topics, self.types)
        if all(x in s for x, s in zip(new, sets, strict=True)):
            return
        self.learnable -= 1
        for x, s in zip(new, sets, strict=True):
            s.add(x)

        def alt(xs: set[bytes]) -> bytes:
            return b"(?:" + b"|".join(re.escape(x) for x in sorted(xs)) + b")"

        self.fullmatch = re.compile(
            rb"\x00" + alt(self.schema_ids) + rb"\x48.{36}" + re.escape(_avro_bytes(b"AuditEntryAppended"))
            + _VARINT + _VARINT + alt(self.sources) + _OPT_UUID + _OPT_UUID + re.escape(self._log_id)
            + rb"(" + _VARINT + rb")\x40(.{32})(" + alt(self.topics) + rb"[\x80-\xff]{0,4}[\x00-\x7f])"
            + rb"(" + _VARINT + rb")" + _OPT_UUID + alt(self.types),
            re.DOTALL,
        ).fullmatch


class _Partition:
    """One source partition: its records' offsets and leaf hashes, and what the audit topic logged of it."""

    __slots__ = ("topic", "partition", "offsets", "hashes", "chunks", "logged_offsets", "logged_hashes",
                 "leaves", "last", "hits", "disordered")

    def __init__(self, topic: str, partition: int) -> None:
        self.topic, self.partition = topic, partition
        self.offsets: list[int] = []  # the source records' offsets, ascending
        self.hashes: list[bytes] = []  # their leaf hashes
        self.chunks: list[Chunk] = []  # the raw batches, for the rare check of unlogged records
        self.logged_offsets: list[int] = []  # clean check: the offsets logged, in leaf order
        self.logged_hashes: list[bytes] = []
        self.leaves: dict[int, bytes] = {}  # leaf-by-leaf check: leaf hash by offset
        self.last = -1  # last logged offset
        self.hits = 0  # logged offsets found in the source
        self.disordered = False


class _Entries:
    """The entries of one log as read from the audit topic, as columns in arrival order, and its heads."""

    def __init__(self) -> None:
        self.index: list[int] = []
        self.part: list[_Partition] = []
        self.offset: list[int] = []
        self.leaf: list[bytes] = []
        self.heads: dict[int, dict] = {}
        self.head_conflicts: list[tuple[int, Divergence]] = []  # (entries read before it, divergence)

    def in_leaf_order(self) -> tuple[list[_Partition], list[int], list[bytes]] | None:
        """(partition, offset, leaf hash) per leaf index 0..n-1, if every index is there and its copies
        (an entry published again after a crash) are equal; None if there is a gap or a conflict."""
        index = self.index
        n = len(index)
        if index == list(range(n)):
            return self.part, self.offset, self.leaf
        first: dict[int, int] = {}
        part, offset, leaf = self.part, self.offset, self.leaf
        for j, i in enumerate(index):
            j0 = first.setdefault(i, j)
            if j0 != j and (part[j0] is not part[j] or offset[j0] != offset[j] or leaf[j0] != leaf[j]):
                return None
        size = len(first)
        if min(first) < 0 or max(first) != size - 1:
            return None
        order = [first[i] for i in range(size)]
        return [part[j] for j in order], [offset[j] for j in order], [leaf[j] for j in order]


async def verify_log(
    *, bootstrap: str, serde: Serde, prefix: str, audit_topic: str, source_topics: list[str],
    log_id: str, public_key: Any, max_divergences: int = 20,
) -> VerifyReport:
    t0 = time.perf_counter()
    report = VerifyReport()

    def diverge(d: Divergence) -> None:
        if len(report.divergences) < max_divergences:
            report.divergences.append(d)

    plen = len(prefix)
    parts: dict[tuple[str, int], _Partition] = {}

    def partition(topic: str, p: int) -> _Partition:
        P = parts.get((topic, p))
        if P is None:
            P = parts[(topic, p)] = _Partition(topic, p)
        return P

    # 1. the audit topic: this log's entries as columns, its heads by size
    log = _Entries()
    heads = log.heads
    log_b = log_id.encode()
    fast: dict[int, bool] = {}  # schema id -> AuditEntryAppended v1, read by parse_entry
    by_key: dict[bytes, _Partition] = {}  # topic + partition as the matcher's group -> partition
    matcher = _EntryMatcher(log_id, (t[plen:] if plen and t.startswith(prefix) else t for t in source_topics))
    add_index, add_part, add_offset, add_leaf = log.index.append, log.part.append, log.offset.append, log.leaf.append

    def entry(idx: int, P: _Partition, off: int, lh: bytes) -> None:
        add_index(idx)
        add_part(P)
        add_offset(off)
        add_leaf(lh)

    def slow(v: bytes) -> None:
        d = serde.decode(v, plain=True)
        r = d.record
        if d.event_type == "AuditEntryAppended" and d.schema_id not in fast:
            fast[d.schema_id] = list(r) == _ENTRY_V1 and parse_entry(v) == (
                r["log_id"].encode(), r["leaf_index"], r["leaf_hash"], r["source_topic"].encode(),
                r["source_partition"], r["source_offset"])
        if r.get("log_id") != log_id:
            return
        if d.event_type == "AuditEntryAppended":
            if fast[d.schema_id]:
                matcher.learn(d.schema_id, r)
            entry(r["leaf_index"], partition(r["source_topic"], r["source_partition"]), r["source_offset"],
                  r["leaf_hash"])
        elif d.event_type == "TreeHeadSigned":
            old = heads.setdefault(r["tree_size"], r)
            if old["root_hash"] != r["root_hash"]:
                log.head_conflicts.append((len(log.index), Divergence(
                    "conflict", "two different roots for one tree size", head_size=r["tree_size"])))

    def on_audit(chunk: Chunk) -> None:
        unpack, parse, get, zz = _HEADER.unpack_from, parse_entry, by_key.get, _zigzag
        fm = matcher.fullmatch
        for m in records(chunk):
            v = m.value
            g = fm(v or b"")
            if g is not None:  # the usual entry of this log: four fields from one match
                ib, lh, key, ob = g.groups()
                P = get(key)
                if P is None:
                    _, _, _, tb, p, _ = parse(v)
                    P = by_key[key] = partition(tb.decode(), p)
                if len(ib) == 3:  # leaf indexes 8192 to 2**20: _zigzag inline
                    x = (ib[0] & 0x7F) | ((ib[1] & 0x7F) << 7) | (ib[2] << 14)
                    add_index((x >> 1) ^ -(x & 1))
                else:
                    add_index(zz(ib))
                add_part(P)
                add_offset(zz(ob))
                add_leaf(lh)
                continue
            try:
                schema = unpack(v)[1]
                ok = fast.get(schema) and v[0] == 0
                if ok:
                    lid, idx, lh, tb, p, off = parse(v)
            except Exception:  # not a v1 entry after all: the serde says what it is (or raises)
                ok = False
            if not ok:
                slow(v)
                fm = matcher.fullmatch
                continue
            if lid != log_b:
                continue
            if matcher.learnable > 0:  # an entry of this log the matcher missed: learn its literals
                matcher.learn(schema, serde.decode(v, plain=True).record)
                fm = matcher.fullmatch
            entry(idx, partition(tb.decode(), p), off, lh)

    # 2. the source topics: offsets and leaf hashes per partition
    hashers: dict[tuple[str, int], Callable[[int, bytes | None, bytes], bytes]] = {}

    def on_source(chunk: Chunk) -> None:
        tp = chunk.tp
        t = tp.topic[plen:] if plen and tp.topic.startswith(prefix) else tp.topic
        P = partition(t, tp.partition)
        leaf = hashers.get((t, tp.partition))
        if leaf is None:
            leaf = hashers[(t, tp.partition)] = partition_leaf_hasher(t, tp.partition)
        offsets, hashes = P.offsets, P.hashes
        n = len(offsets)
        add_offset, add_hash = offsets.append, hashes.append
        for m in records(chunk):
            o = m.offset
            add_offset(o)
            add_hash(leaf(o, m.key, m.value or b""))
        P.chunks.append(chunk)
        report.source_records += len(offsets) - n

    # both reads at once: the broker serves one while the other's records are hashed
    await asyncio.gather(read_chunks(bootstrap, [audit_topic], on_audit), read_chunks(bootstrap, source_topics, on_source))

    if not _clean_check(log, parts, report, log_id, public_key, diverge):
        report.leaf_by_leaf = True
        _leaf_by_leaf_check(log, parts, report, serde, log_id, public_key, diverge)
    report.heads = len(heads)
    report.divergences.sort(key=lambda d: (d.leaf_index if d.leaf_index is not None
                                           else d.head_size if d.head_size is not None else 1 << 62))
    report.seconds = time.perf_counter() - t0
    return report


def _clean_check(log: _Entries, parts: dict[tuple[str, int], _Partition], report: VerifyReport, log_id: str,
                 public_key: Any, diverge: Callable[[Divergence], None]) -> bool:
    """Whole-list comparisons: True (and the heads checked) if every leaf 0..n-1 is logged once (or
    in equal copies), no head conflicts or lies beyond n, and each partition's logged offsets and
    leaf hashes, in leaf order, are exactly its first source records'. Then the leaf-by-leaf check
    would find nothing but what the heads say; False: it has to run."""
    if log.head_conflicts:
        return False
    cols = log.in_leaf_order()
    if cols is None:
        return False
    part, offset, leaf = cols
    n = len(leaf)
    if any(s > n or s < 0 for s in log.heads):
        return False
    for P in parts.values():
        P.logged_offsets, P.logged_hashes = [], []
    for P, off, lh in zip(part, offset, leaf):
        P.logged_offsets.append(off)
        P.logged_hashes.append(lh)
    for P in parts.values():
        k = len(P.logged_offsets)
        if k and (P.logged_offsets != P.offsets[:k] or P.logged_hashes != P.hashes[:k]):
            return False
    report.leaves = n
    report.not_yet_logged = sum(len(P.offsets) - len(P.logged_offsets) for P in parts.values())
    levels = tree_levels(leaf)
    for size in sorted(log.heads):
        _check_head(log.heads[size], root_from_levels(levels, size), log_id, public_key, diverge)
    return True


def _leaf_by_leaf_check(log: _Entries, parts: dict[tuple[str, int], _Partition], report: VerifyReport, serde: Serde,
                        log_id: str, public_key: Any, diverge: Callable[[Divergence], None]) -> None:
    """Every leaf in order against its source record, every head at its size, every unlogged record."""
    heads = log.heads
    # the entries by leaf index, the first copy winning, conflicts in the order they were read
    entries: dict[int, tuple[_Partition, int, bytes]] = {}
    conflicts: list[Divergence] = []
    head_conflicts = iter(log.head_conflicts)
    hc = next(head_conflicts, None)
    for j, (idx, P, off, lh) in enumerate(zip(log.index, log.part, log.offset, log.leaf)):
        while hc is not None and hc[0] == j:
            conflicts.append(hc[1])
            hc = next(head_conflicts, None)
        e = (P, off, lh)
        old = entries.setdefault(idx, e)
        if old is not e and (old[0] is not P or old[1] != off or old[2] != lh):
            conflicts.append(Divergence("conflict", "two different entries for one leaf", idx, P.topic, P.partition, off))
    while hc is not None:
        conflicts.append(hc[1])
        hc = next(head_conflicts, None)
    for P in parts.values():
        P.leaves = dict(zip(P.offsets, P.hashes))

    # leaves in order, roots at every head
    for c in conflicts:
        diverge(c)
    acc = RootAccumulator()
    size = max(entries) + 1 if entries else 0
    head_sizes = sorted(heads)
    if head_sizes and head_sizes[-1] > size:
        diverge(Divergence("leaf_gap", f"a head covers {head_sizes[-1]} leaves, the audit topic has {size}",
                           head_size=head_sizes[-1]))
    pending_heads = iter(head_sizes)
    next_head = next(pending_heads, None)
    while next_head is not None and next_head <= 0:  # the empty tree's head; a negative size is no head
        if next_head == 0:
            _check_head(heads[0], EMPTY_ROOT, log_id, public_key, diverge)
        else:
            diverge(Divergence("head_root", "a head of a negative size", head_size=next_head))
        next_head = next(pending_heads, None)
    add, get = acc.add, entries.get
    for i in range(size):
        e = get(i)
        if e is None:
            diverge(Divergence("leaf_gap", "no AuditEntryAppended for this leaf", i))
            break
        P, off, logged = e
        got = P.leaves.get(off)
        if got is None:
            diverge(Divergence("record_missing", "the logged source record is gone", i, P.topic, P.partition, off))
            got = logged
        else:
            P.hits += 1
            if got != logged:
                diverge(Divergence("leaf_changed", "the source record differs from the logged one", i,
                                   P.topic, P.partition, off))
        if off <= P.last:
            P.disordered = True
            diverge(Divergence("order", f"offset {off} logged after offset {P.last} of the same partition",
                               i, P.topic, P.partition, off))
        P.last = off
        add(got)
        while acc.size == next_head:
            _check_head(heads[next_head], acc.root(), log_id, public_key, diverge)
            next_head = next(pending_heads, None)
    report.leaves = size
    # every decodable source record up to the last logged offset of its partition is a leaf
    for P in sorted(parts.values(), key=lambda P: (P.topic, P.partition)):
        inside = [o for o in P.leaves if o <= P.last] if P.leaves and max(P.leaves) > P.last else P.leaves
        report.not_yet_logged += len(P.leaves) - len(inside)
        if P.hits == len(inside) and not P.disordered:
            continue  # each logged offset once, in order, all present: the logged range is covered
        covered = {off for Q, off, _ in entries.values() if Q is P}
        raw = {m.offset: m.value or b"" for c in P.chunks for m in records(c)}
        for off in sorted(o for o in inside if o not in covered):
            try:
                serde.decode(raw[off], plain=True)
            except Exception:  # poison: dead-lettered, its DeadLetter event is the leaf
                continue
            diverge(Divergence("record_not_logged", "a source record inside the logged range has no leaf",
                               None, P.topic, P.partition, off))


def _check_head(head: dict, root: bytes, log_id: str, public_key: Any, diverge: Callable[[Divergence], None]) -> None:
    size = head["tree_size"]
    if head["root_hash"] != root:
        diverge(Divergence("head_root", "the signed root differs from the recomputed one",
                           leaf_index=size - 1, head_size=size))
        return
    sigs = [Signature(key_id=s["key_id"], algorithm=s["algorithm"], value=s["value"]) for s in head["signatures"]]
    try:
        verify_signatures(public_key, note_body(log_id, size, root).encode(), sigs)
    except VerificationError as e:
        diverge(Divergence("head_signature", str(e), leaf_index=size - 1, head_size=size))
