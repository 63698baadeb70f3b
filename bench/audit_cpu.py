"""CPU per leaf of the audit writer, offline (no Kafka, no Postgres), and a digest of its outputs.

Feeds ``AuditWriter.prepare`` the envelope-decoded records the batch runner would hand the audit
processor (N readings over P partitions, batches of B), then builds each batch's COPY text as
``AuditStore.commit`` does. Reports the process CPU per leaf (``time.process_time``) and, with
``--digest``, a SHA-256 over every batch's rows, tiles, compact range, positions, COPY text and
AuditEntryAppended records (``now`` pinned; head signatures left out: the signing key is fresh per
run), so two versions of the code can be compared byte for byte.

    python -m bench.audit_cpu [--records 200000] [--batch 20000] [--digest] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import pstats
import sys
import time
import uuid
import zlib
from datetime import UTC, datetime, timedelta

from bench._report import report
from events.models import SensorReading
from events.reader import ConsumedRecord
from events.registry import BuiltinRegistry
from events.schemas import SchemaCatalog
from events.serde import Serde
from events.signing import HybridKeyPair
from events.topics import TopicNames
from streams.audit.store import entries_copy_text
from streams.audit.writer import AuditWriter

_NOW = datetime(2026, 6, 1, tzinfo=UTC)


class _NoStore:
    """``prepare`` never touches the store."""


def batches(serde: Serde, n: int, partitions: int, batch: int) -> list[list[ConsumedRecord]]:
    topic = TopicNames("").topic("readings")
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    per: list[list[ConsumedRecord]] = [[] for _ in range(partitions)]
    for i in range(n):
        e = SensorReading(event_id=uuid.uuid5(uuid.NAMESPACE_OID, f"a/{i}"), occurred_at=t0 + timedelta(seconds=i),
                          recorded_at=t0, source="bench", twin_id=f"tw-{i % 1000}", sensor_id="s1", quantity="pressure",
                          value=float(i), unit="kPa")
        key = e.key().encode()
        p = zlib.crc32(key) % partitions
        value = serde.encode_event(e)
        per[p].append(ConsumedRecord(topic, p, len(per[p]), 0, key, value, serde.decode_envelope(value), None))
    out, pos, step = [], [0] * partitions, batch // partitions
    while any(pos[p] < len(per[p]) for p in range(partitions)):
        b = []
        for p in range(partitions):
            b.extend(per[p][pos[p]:pos[p] + step])
            pos[p] += step
        out.append(b)
    return out


def run(args: argparse.Namespace) -> dict:
    catalog = SchemaCatalog.load()
    topics = TopicNames("")
    serde = Serde(catalog, BuiltinRegistry(catalog), topics)
    import asyncio

    asyncio.run(serde.prepare())
    todo = batches(serde, args.records, args.partitions, args.batch)
    w = AuditWriter(_NoStore(), HybridKeyPair.generate(key_id="bench/1"), serde, topics,  # type: ignore[arg-type]
                    log_id="bench.local/cpu", head_every_entries=args.head_every, head_every_s=1e9)
    w._encoder = w._entry_encoder()
    from streams.audit.compact import CompactRange
    from streams.audit.tiles import TileBuilder

    w._cr, w._tiles, w._positions = CompactRange(), TileBuilder(), {}
    w._last_head_mono = time.monotonic()
    w._set_tip(w._cr, w._tiles, w._positions, w._last_head_mono)
    digest = hashlib.sha256()
    prof = cProfile.Profile() if args.profile else None
    t_cpu = time.process_time()
    if prof:
        prof.enable()
    leaves = 0
    for b in todo:
        p = w.prepare(b, now=_NOW, ids_checked=True)  # envelope-decoded, as the worker's
        c = p.commit
        text = entries_copy_text(w.log_id, c.entries, c.appended_at) if c.copy_text is None else c.copy_text
        leaves += len(c.entries)
        if args.digest:
            digest.update(repr((c.expected_size, c.tree_size, c.compact, sorted(c.tiles.items()), list(c.entries),
                                sorted(c.positions.items()), [(h.tree_size, h.root) for h in c.heads])).encode())
            digest.update(text.encode())
            for o in p.outputs:
                if o.topic and o.event_id is None:  # entries; heads carry signatures (fresh key)
                    digest.update(o.topic.encode() + b"\0" + (o.key or b"") + b"\0" + o.value + b"\n")
    if prof:
        prof.disable()
    cpu = time.process_time() - t_cpu
    if prof:
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    row = {"records": args.records, "batches": len(todo), "leaves": leaves,
           "cpu_us_per_leaf": round(cpu / max(leaves, 1) * 1e6, 2)}
    if args.digest:
        row["digest"] = digest.hexdigest()[:16]
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--batch", type=int, default=20_000)
    ap.add_argument("--head-every", type=int, default=100_000)
    ap.add_argument("--digest", action="store_true")
    ap.add_argument("--profile", action="store_true", help="cProfile the writer, to stderr")
    args = ap.parse_args()
    report("audit_cpu", [run(args)], params=vars(args))


if __name__ == "__main__":
    main()
