"""``qi audit verify``: re-read the source topics and the audit topic, recompute everything.

Independent of the writer and of Postgres: it uses only the Kafka topics, the hash definitions,
the verifier and the log's public key. Leaves are recomputed from the source records at the
(topic, partition, offset) each AuditEntryAppended names, in leaf order; the root is recomputed at
every TreeHeadSigned size and both of its signatures checked. The first divergence, in leaf
order, is named: which leaf, which source record, which head.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from events.models import Signature
from events.reader import log_end_offsets
from events.serde import Serde
from streams.audit.hashing import LEAF_PREFIX, leaf_data
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
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                         client_id="qi-audit-verify", max_partition_fetch_bytes=8 * 1024 * 1024,
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
            fetched = await c.getmany(*remaining, timeout_ms=500, max_records=20000)
            for tp, msgs in fetched.items():
                end = ends[tp]
                for m in msgs:
                    if m.offset < end:
                        on_message(m)
                        n += 1
                if msgs and msgs[-1].offset >= end - 1:
                    remaining.discard(tp)
    finally:
        await c.stop()
    return n


async def verify_log(
    *, bootstrap: str, serde: Serde, prefix: str, audit_topic: str, source_topics: list[str],
    log_id: str, public_key: Any, max_divergences: int = 20,
) -> VerifyReport:
    t0 = time.perf_counter()
    report = VerifyReport()

    def diverge(d: Divergence) -> None:
        if len(report.divergences) < max_divergences:
            report.divergences.append(d)

    # 1. the audit topic: entries by leaf index, heads by size
    entries: dict[int, tuple] = {}
    heads: dict[int, dict] = {}
    conflicts: list[Divergence] = []

    def on_audit(m: Any) -> None:
        v = m.value
        d = serde.decode(v, plain=True)
        r = d.record
        if r.get("log_id") != log_id:
            return
        if d.event_type == "AuditEntryAppended":
            e = (r["source_topic"], r["source_partition"], r["source_offset"], r["leaf_hash"])
            old = entries.setdefault(r["leaf_index"], e)
            if old != e:
                conflicts.append(Divergence("conflict", "two different entries for one leaf", r["leaf_index"],
                                            r["source_topic"], r["source_partition"], r["source_offset"]))
        elif d.event_type == "TreeHeadSigned":
            old = heads.setdefault(r["tree_size"], r)
            if old["root_hash"] != r["root_hash"]:
                conflicts.append(Divergence("conflict", "two different roots for one tree size",
                                            head_size=r["tree_size"]))


    # 2. the source topics: one leaf hash per record, keyed by where it sits (read concurrently)
    sha = hashlib.sha256
    plen = len(prefix)
    source: dict[tuple[str, int, int], bytes] = {}
    raw: dict[tuple[str, int, int], bytes] = {}

    def on_source(m: Any) -> None:
        t = m.topic[plen:] if plen and m.topic.startswith(prefix) else m.topic
        source[(t, m.partition, m.offset)] = sha(
            LEAF_PREFIX + leaf_data(t, m.partition, m.offset, m.key, m.value or b"")).digest()
        raw[(t, m.partition, m.offset)] = m.value or b""

    # both reads at once: the broker's fetch latency of one overlaps the other's hashing
    _, report.source_records = await asyncio.gather(
        read_raw(bootstrap, [audit_topic], on_audit), read_raw(bootstrap, source_topics, on_source))

    # 3. leaves in order, roots at every head
    for c in conflicts:
        diverge(c)
    acc = RootAccumulator()
    size = max(entries) + 1 if entries else 0
    head_sizes = sorted(heads)
    if head_sizes and head_sizes[-1] > size:
        diverge(Divergence("leaf_gap", f"a head covers {head_sizes[-1]} leaves, the audit topic has {size}",
                           head_size=head_sizes[-1]))
    next_head = 0
    last_offset: dict[tuple[str, int], int] = {}
    covered: set[tuple[str, int, int]] = set()
    for i in range(size):
        e = entries.get(i)
        if e is None:
            diverge(Divergence("leaf_gap", "no AuditEntryAppended for this leaf", i))
            break
        topic, part, off, logged = e
        key = (topic, part, off)
        got = source.get(key)
        if got is None:
            diverge(Divergence("record_missing", "the logged source record is gone", i, topic, part, off))
            got = logged
        elif got != logged:
            diverge(Divergence("leaf_changed", "the source record differs from the logged one", i, topic, part, off))
        prev = last_offset.get((topic, part), -1)
        if off <= prev:
            diverge(Divergence("order", f"offset {off} logged after offset {prev} of the same partition",
                               i, topic, part, off))
        last_offset[(topic, part)] = off
        covered.add(key)
        acc.add(got)
        while next_head < len(head_sizes) and head_sizes[next_head] == acc.size:
            _check_head(heads[acc.size], acc.root(), log_id, public_key, diverge)
            next_head += 1
    report.leaves = size
    report.heads = len(heads)
    # 4. every decodable source record up to the last logged offset of its partition is a leaf
    for key in sorted(source):
        topic, part, off = key
        if key in covered:
            continue
        if off > last_offset.get((topic, part), -1):
            report.not_yet_logged += 1
            continue
        try:
            serde.decode(raw[key], plain=True)
        except Exception:  # poison: dead-lettered, its DeadLetter event is the leaf
            continue
        diverge(Divergence("record_not_logged", "a source record inside the logged range has no leaf",
                           None, topic, part, off))
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
