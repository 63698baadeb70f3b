"""The audit worker SIGKILLed at random points while 50,000+ events flow.

After restarts: exactly one leaf per source record, each partition's records in offset order,
every AuditEntryAppended for every leaf (duplicates identical), every signed head a
prefix-consistent extension of the one before, and the whole-log verify passes.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys

import pytest

from events.signing import HybridPublicKey
from streams.audit.logcheck import read_raw, verify_log
from streams.audit.prover import consistency_document
from streams.audit.verifier import verify_proof_document
from tests.conftest import ROOT
from tests.fixtures import example_event
from tests.streams.audit.helpers import audit_platform
from tests.streams.helpers import readings

pytestmark = pytest.mark.stack

N_READINGS = 50_000
KILLS = 5


def _spawn(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "qi", "worker", "audit"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_sigkilled_worker_leaves_exactly_one_leaf_per_record(platform, catalog, stack_env, tmp_path):
    seed = int.from_bytes(os.urandom(4), "big")
    rnd = random.Random(seed)
    p = audit_platform(platform, tmp_path, head_every_entries=2000, head_every_s=1.0)
    a = p.settings.audit
    env = dict(stack_env) | {
        "QI_KAFKA_TOPIC_PREFIX": p.settings.kafka.topic_prefix, "QI_KAFKA_PARTITIONS": "3",
        "QI_AUDIT_LOG_ID": a.log_id, "QI_AUDIT_KEY_DIR": str(tmp_path),
        "QI_AUDIT_HEAD_EVERY_ENTRIES": "2000", "QI_AUDIT_HEAD_EVERY_S": "1",
        "QI_RUNNER_SESSION_TIMEOUT_MS": "3000", "QI_RUNNER_HEARTBEAT_INTERVAL_MS": "300",
        "QI_RUNNER_MAX_BATCH": "2000", "QI_LOG_LEVEL": "warning",
    }
    events = readings(N_READINGS, sensors=50)
    events += [example_event(catalog, n, i) for i in range(100) for n in ("TwinRegistered", "CertificateIssued")]
    rnd.shuffle(events)

    segments = [events[i::KILLS + 1] for i in range(KILLS + 1)]  # ~8,400 events per round

    async def produce(segment):
        """One round's events as a steady flow: four parts, 0.3 s apart."""
        serde = await p.serde()
        async with p.publisher(serde) as pub:
            step = len(segment) // 4 + 1
            for i in range(0, len(segment), step):
                await pub.publish_many(segment[i:i + step])
                await asyncio.sleep(0.3)

    async def go():
        await p.ensure_topics()
        kills = []
        sizes = []
        store = p.audit_store()
        await store.start()
        # Each round: events start flowing, a worker starts, appends, and is SIGKILLed at a random
        # moment of its work. (A killed member is replaced only after the group's session timeout
        # and a rebalance, several seconds on the embedded broker: rounds wait for that, not a clock.)
        for r in range(KILLS):
            before = (await store.load()).tree_size
            producer = asyncio.create_task(produce(segments[r]))
            proc = _spawn(env)
            deadline = asyncio.get_running_loop().time() + 90
            while (await store.load()).tree_size == before and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
            delay = rnd.uniform(0.0, 1.0)
            await asyncio.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills.append(round(delay, 2))
            sizes.append((await store.load()).tree_size)
            await producer
        await produce(segments[-1])
        # the kills hit a worker that was appending: the tree grew between them and was not done
        assert all(0 < a < b < len(events) for a, b in zip(sizes, sizes[1:])), f"sizes at the kills: {sizes}"
        proc = _spawn(env)
        try:
            deadline = asyncio.get_running_loop().time() + 150
            while True:
                size = (await store.load()).tree_size
                if size >= len(events) or asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.5)
            await asyncio.sleep(2.5)  # a time-driven head over the tail
        finally:
            proc.send_signal(signal.SIGTERM)
            err = proc.communicate(timeout=30)[1].decode()
        assert proc.returncode == 0, err[-2000:]
        try:
            state = await store.load()
            assert state.tree_size == len(events), f"seed {seed}, kills at {kills}"
            entries = await store.entries(0, state.tree_size)
            where = [(e.source_topic, e.source_partition, e.source_offset) for e in entries]
            assert len(set(where)) == len(where)  # no record twice
            source: set = set()
            await read_raw(p.endpoints().kafka, [p.topics.topic(f) for f in a.families],
                           lambda m: source.add((m.topic, m.partition, m.offset)))
            assert set(where) == source  # every record once
            last: dict = {}
            for t, part, off in where:  # stable order: offsets ascend within each partition
                assert off > last.get((t, part), -1)
                last[(t, part)] = off
            heads = await store.heads()
            assert len(heads) >= len(events) // 2000
            pub = HybridPublicKey.load(tmp_path / "audit-log.pub.json")
            for h0, h1 in zip(heads, heads[1:]):
                doc = await consistency_document(store, h0.tree_size, h1.tree_size)
                assert verify_proof_document(doc, pub).startswith("OK")
        finally:
            await store.close()
        report = await verify_log(
            bootstrap=p.endpoints().kafka, serde=await p.serde(), prefix=p.topics.prefix,
            audit_topic=p.topics.topic("audit"), source_topics=[p.topics.topic(f) for f in a.families],
            log_id=a.log_id, public_key=pub)
        assert report.ok, (seed, kills, report.divergences[:3])
        assert report.leaves == len(events) and report.heads == len(heads)

    asyncio.run(go())
