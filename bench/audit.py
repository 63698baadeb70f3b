"""Audit log throughput, proof latency and whole-log verification speed.

* floor: a bare aiokafka consumer reading the same readings and decoding them (``Serde.decode``,
  plain Avro), same run, fetching as many records per call as the audit worker's batches;
* ours: the audit worker (AuditProcessor on the batch runner) from an empty log until every event
  is a leaf committed to Postgres and every AuditEntryAppended is acknowledged;
* prove_p99_ms: `inclusion_document` (entry lookup + latest head + tiles from Postgres + proof)
  for random events of a log of 1,000,000 leaves, built through the same writer (synthetic
  records: the million leaves go through AuditWriter.append and its Postgres commits, not Kafka);
* verify_per_s: `qi audit verify`'s `verify_log` over the log of the "ours" run, the median of
  ``--verify-runs`` (3) runs; every run's rate is in the params (``verify_runs_per_s``).

    python -m bench.audit [--events 100000] [--prove-leaves 1000000] [--proofs 2000] [--verify-runs 3]
                       [--log-storage memory]

(``-m``: run as ``python bench/audit.py``, bench/platform.py would shadow the standard library's
``platform``.) The broker's log is in memory by default, as in the test stack: with Tansu's
durable s3 engine every produce is an object write (decision 0070), which measures SeaweedFS, not
the audit worker, whose AuditEntryAppended output the floor does not have.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402
from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: E402

from bench._report import report  # noqa: E402
from events.publisher import OutgoingRecord  # noqa: E402
from events.reader import log_end_offsets  # noqa: E402
from events.signing import HybridKeyPair, HybridPublicKey  # noqa: E402
from qi.config import AuditSettings, KafkaSettings, PostgresSettings, Settings  # noqa: E402
from qi.platform import Platform  # noqa: E402
from qi.stack import LocalStack  # noqa: E402
from streams.audit.logcheck import verify_log  # noqa: E402
from streams.audit.prover import inclusion_document  # noqa: E402
from streams.audit.writer import AuditWriter  # noqa: E402


def platform_for(urls: dict, prefix: str, key_dir: Path, **audit) -> Platform:
    s = Settings.from_env()
    return Platform(s.model_copy(update={
        "kafka": KafkaSettings(bootstrap=urls["kafka"], topic_prefix=prefix),
        "postgres": PostgresSettings(dsn=urls["postgres"]),
        "audit": AuditSettings(log_id=f"bench.local/{prefix.rstrip('.')}", key_dir=key_dir,
                               families=["readings"], **audit),
    }))


async def publish_readings(p: Platform, n: int) -> None:
    from tests.streams.helpers import readings

    serde = await p.serde()
    topic = p.topics.topic("readings")
    async with p.publisher(serde) as pub:
        for i in range(0, n, 20000):
            evs = readings(min(20000, n - i), sensors=1000)
            await pub.publish_records([OutgoingRecord(topic, e.key().encode(), serde.encode_event(e)) for e in evs])


async def floor_rate(p: Platform, n: int) -> float:
    serde = await p.serde()
    batch = p.settings.audit.max_batch
    c = AIOKafkaConsumer(bootstrap_servers=p.endpoints().kafka, enable_auto_commit=False,
                         auto_offset_reset="earliest", max_partition_fetch_bytes=4 * 1024 * 1024)
    await c.start()
    try:
        topic = p.topics.topic("readings")
        tps = [TopicPartition(topic, q) for q in sorted(c.partitions_for_topic(topic) or ())]
        c.assign(tps)
        await log_end_offsets(c, tps)
        await c.seek_to_beginning(*tps)
        got = 0
        t = time.perf_counter()
        while got < n:
            for _tp, msgs in (await c.getmany(timeout_ms=200, max_records=batch)).items():
                for m in msgs:
                    serde.decode(m.value, plain=True)
                got += len(msgs)
        return n / (time.perf_counter() - t)
    finally:
        await c.stop()


async def ours_rate(p: Platform, n: int) -> float:
    serde = await p.serde()
    proc = p.audit_processor(serde)
    runner = p.batch_runner(proc, serde)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    # the clock starts at the first committed batch: joining the consumer group is a one-off cost
    while proc.writer.tree_size == 0:
        await asyncio.sleep(0.001)
        if task.done():
            task.result()
    t, first = time.perf_counter(), proc.writer.tree_size
    while getattr(proc.writer, "_published_through", 0) < n:
        await asyncio.sleep(0.01)
        if task.done():
            task.result()
    elapsed = time.perf_counter() - t
    stop.set()
    await task
    if first >= n:
        raise SystemExit(f"--events {n}: the worker's first batch held them all, nothing is left to time; "
                         "use several batches' worth (the default is 100000)")
    return (n - first) / elapsed


@dataclass
class _Rec:
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    decoded: object


@dataclass
class _Dec:
    event_type: str
    record: dict


async def prove_p99(p: Platform, leaves: int, proofs: int) -> tuple[float, float]:
    """Build a log of ``leaves`` through AuditWriter, then time inclusion proofs of random events."""
    serde = await p.serde()
    store = p.audit_store()
    every = min(100_000, leaves)  # a head every this many leaves: proofs need a head that covers them
    writer = AuditWriter(store, p.log_key_pair(), serde, p.topics, log_id=p.settings.audit.log_id,
                         head_every_entries=every, head_every_s=1e9)
    await writer.start()
    ids: list[str] = []
    t = time.perf_counter()
    batch = 20_000
    for start in range(writer.tree_size, leaves, batch):
        recs = []
        for off in range(start, min(start + batch, leaves)):
            eid = str(uuid.UUID(int=off + 1))
            recs.append(_Rec("qi.readings.v1", 0, off, b"tw", off.to_bytes(8, "big") * 12,
                             _Dec("SensorReading", {"event_id": eid})))
        await writer.append(recs)
        await writer.flush()
    build_s = time.perf_counter() - t
    covered = writer.tree_size - writer.tree_size % every  # the last head's size
    ids = [str(uuid.UUID(int=i + 1)) for i in random.sample(range(covered), min(proofs, covered))]
    async with await psycopg.AsyncConnection.connect(p.endpoints().postgres, autocommit=True) as c:
        await c.execute("ANALYZE audit.entries")  # what autovacuum does soon after a bulk load
        await c.execute("ANALYZE audit.tiles")
    times = []
    for eid in ids:
        t = time.perf_counter()
        await inclusion_document(store, eid)
        times.append((time.perf_counter() - t) * 1000)
    await writer.close()
    times.sort()
    print(f"prove: p50 {times[len(times) // 2]:.2f} ms, p99 {times[int(len(times) * 0.99) - 1]:.2f} ms, "
          f"max {times[-1]:.2f} ms over {len(times)} proofs")
    return times[int(len(times) * 0.99) - 1], build_s


async def main(args) -> None:
    bootstrap = os.environ.get("QI_KAFKA_BOOTSTRAP")
    stack = None
    if bootstrap:
        urls = {"kafka": bootstrap, "postgres": os.environ["QI_POSTGRES_DSN"]}
    else:
        stack = LocalStack(Path(__file__).resolve().parents[1] / ".qi" / "bench", log_storage=args.log_storage)
        urls = stack.up()
    key_dir = Path(tempfile.mkdtemp(prefix="qi-bench-keys-"))
    HybridKeyPair.generate(key_id="bench-log/1").save(key_dir, "audit-log")
    pub = HybridPublicKey.load(key_dir / "audit-log.pub.json")
    try:
        prefix = f"bench-{uuid.uuid4().hex[:8]}."
        p = platform_for(urls, prefix, key_dir, head_every_entries=10_000, head_every_s=5.0)
        await p.ensure_topics()
        await publish_readings(p, args.events)
        floor = max([await floor_rate(p, args.events) for _ in range(2)])
        ours = await ours_rate(p, args.events)
        a = p.settings.audit
        verify_runs = []  # one verify is a sample of < 1 s on a noisy host: the median of a few
        for _ in range(args.verify_runs):
            t = time.perf_counter()
            rep = await verify_log(bootstrap=p.endpoints().kafka, serde=await p.serde(), prefix=p.topics.prefix,
                                   audit_topic=p.topics.topic("audit"), source_topics=[p.topics.topic("readings")],
                                   log_id=a.log_id, public_key=pub)
            verify_runs.append(time.perf_counter() - t)
            assert rep.ok, rep.divergences[:3]
        verify_s = statistics.median(verify_runs)
        p2 = platform_for(urls, f"bench-prove-{uuid.uuid4().hex[:8]}.", key_dir)
        p99, build_s = await prove_p99(p2, args.prove_leaves, args.proofs)
        row = {
            "floor_per_s": floor, "ours_per_s": ours, "ratio": ours / floor,
            "prove_p99_ms": p99, "verify_per_s": rep.leaves / verify_s,
            "verify_vs_floor": rep.leaves / verify_s / floor,  # the machine's load cancels out of this
        }
        report("audit", [row], params={**vars(args), "prove_log_build_s": round(build_s, 1),
                                       "verify_leaves": rep.leaves, "verify_s": round(verify_s, 2),
                                       "verify_runs_per_s": [round(rep.leaves / x) for x in verify_runs]})
    finally:
        if stack is not None:
            stack.down(purge=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--prove-leaves", type=int, default=1_000_000)
    ap.add_argument("--proofs", type=int, default=2000)
    ap.add_argument("--verify-runs", type=int, default=3, help="verify_per_s is the median of this many verifies")
    ap.add_argument("--log-storage", choices=["memory", "durable"], default="memory",
                    help="the local stack's broker log (ignored with QI_KAFKA_BOOTSTRAP set)")
    asyncio.run(main(ap.parse_args()))
