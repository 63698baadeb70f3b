"""``qi audit verify``: re-read the source topics and the audit topic, recompute everything.

Independent of the writer and of Postgres: it uses only the Kafka topics, the hash definitions,
the verifier and the log's public key. Leaves are recomputed from the source records at the
(topic, partition, offset) each AuditEntryAppended names, in leaf order; the root is recomputed at
every TreeHeadSigned size and both of its signatures checked. The first divergence, in leaf
order, is named: which leaf, which source record, which head.
"""

from __future__ import annotations

import asyncio
import re
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from events.models import Signature
from events.reader import log_end_offsets
from events.serde import Serde
from streams.audit.hashing import partition_leaf_hasher
from streams.audit.verifier import RootAccumulator, VerificationError, note_body, verify_signatures


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


class _Partition:
    """One source partition: its records' leaf hashes by offset, and what the audit topic logged of it."""

    __slots__ = ("topic", "partition", "leaves", "batches", "last", "hits", "disordered")

    def __init__(self, topic: str, partition: int) -> None:
        self.topic, self.partition = topic, partition
        self.leaves: dict[int, bytes] = {}
        self.batches: list[list] = []  # the raw records, for the rare check of unlogged ones
        self.last = -1  # last logged offset
        self.hits = 0  # logged offsets found in the source
        self.disordered = False


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

    # 1. the audit topic: entries by leaf index, heads by size
    entries: dict[int, tuple[_Partition, int, bytes]] = {}
    heads: dict[int, dict] = {}
    conflicts: list[Divergence] = []
    log_b = log_id.encode()
    fast: dict[int, bool] = {}  # schema id -> AuditEntryAppended v1, read by parse_entry
    by_topic: dict[tuple[bytes, int], _Partition] = {}

    def entry(idx: int, topic: str, p: int, off: int, lh: bytes) -> None:
        P = partition(topic, p)
        e = (P, off, lh)
        old = entries.setdefault(idx, e)
        if old is not e and (old[0] is not P or old[1:] != e[1:]):
            conflicts.append(Divergence("conflict", "two different entries for one leaf", idx, topic, p, off))

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
            entry(r["leaf_index"], r["source_topic"], r["source_partition"], r["source_offset"], r["leaf_hash"])
        elif d.event_type == "TreeHeadSigned":
            old = heads.setdefault(r["tree_size"], r)
            if old["root_hash"] != r["root_hash"]:
                conflicts.append(Divergence("conflict", "two different roots for one tree size",
                                            head_size=r["tree_size"]))

    def on_audit(_tp: TopicPartition, msgs: list) -> None:
        unpack, parse, get, setdefault = _HEADER.unpack_from, parse_entry, by_topic.get, entries.setdefault
        for m in msgs:
            v = m.value
            try:
                ok = fast.get(unpack(v)[1]) and v[0] == 0
                if ok:
                    lid, idx, lh, tb, p, off = parse(v)
            except Exception:  # not a v1 entry after all: the serde says what it is (or raises)
                ok = False
            if not ok:
                slow(v)
                continue
            if lid != log_b:
                continue
            P = get((tb, p))
            if P is None:
                P = by_topic[(tb, p)] = partition(tb.decode(), p)
            e = (P, off, lh)
            old = setdefault(idx, e)
            if old is not e and (old[0] is not P or old[1] != off or old[2] != lh):
                conflicts.append(Divergence("conflict", "two different entries for one leaf", idx, P.topic, p, off))

    # 2. the source topics: one leaf hash per record, keyed by where it sits
    def on_source(tp: TopicPartition, msgs: list) -> None:
        t = tp.topic[plen:] if plen and tp.topic.startswith(prefix) else tp.topic
        P = partition(t, tp.partition)
        leaf = hashers.get((t, tp.partition))
        if leaf is None:
            leaf = hashers[(t, tp.partition)] = partition_leaf_hasher(t, tp.partition)
        P.leaves.update({m.offset: leaf(m.offset, m.key, m.value or b"") for m in msgs})
        P.batches.append(msgs)

    hashers: dict[tuple[str, int], Callable[[int, bytes | None, bytes], bytes]] = {}
    # both reads at once: the broker's fetch latency of one overlaps the other's hashing
    _, report.source_records = await asyncio.gather(
        read_batches(bootstrap, [audit_topic], on_audit), read_batches(bootstrap, source_topics, on_source))

    # 3. leaves in order, roots at every head
    for c in conflicts:
        diverge(c)
    acc = RootAccumulator()
    size = max(entries) + 1 if entries else 0
    head_sizes = sorted(heads)
    if head_sizes and head_sizes[-1] > size:
        diverge(Divergence("leaf_gap", f"a head covers {head_sizes[-1]} leaves, the audit topic has {size}",
                           head_size=head_sizes[-1]))
    pending_heads = iter(head_sizes)
    next_head = next(pending_heads, -1)
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
            next_head = next(pending_heads, -1)
    report.leaves = size
    report.heads = len(heads)
    # 4. every decodable source record up to the last logged offset of its partition is a leaf
    for P in sorted(parts.values(), key=lambda P: (P.topic, P.partition)):
        inside = [o for o in P.leaves if o <= P.last] if P.leaves and max(P.leaves) > P.last else P.leaves
        report.not_yet_logged += len(P.leaves) - len(inside)
        if P.hits == len(inside) and not P.disordered:
            continue  # each logged offset once, in order, all present: the logged range is covered
        covered = {off for Q, off, _ in entries.values() if Q is P}
        raw = {m.offset: m.value or b"" for b in P.batches for m in b}
        for off in sorted(o for o in inside if o not in covered):
            try:
                serde.decode(raw[off], plain=True)
            except Exception:  # poison: dead-lettered, its DeadLetter event is the leaf
                continue
            diverge(Divergence("record_not_logged", "a source record inside the logged range has no leaf",
                               None, P.topic, P.partition, off))
    report.divergences.sort(key=lambda d: (d.leaf_index if d.leaf_index is not None
                                           else d.head_size if d.head_size is not None else 1 << 62))
    report.seconds = time.perf_counter() - t0
    return report


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
