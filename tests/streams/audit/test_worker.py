"""The audit worker on the real stack: a log of 10,080 leaves, heads, a verified proof for every
event in it (from the stored tiles; a sample through `prove`'s own path), whole-log verify."""

from __future__ import annotations

import asyncio
import gc
import json

import pytest

from events.signing import HybridPublicKey
from streams.audit.logcheck import verify_log
from streams.audit.processor import FULL_COLLECTION_EVERY
from streams.audit.prover import consistency_document, inclusion_document
from streams.audit.tiles import TileReader
from streams.audit.verifier import VerificationError, verify_checkpoint, verify_inclusion, verify_proof_document
from tests.fixtures import example_event
from tests.streams.audit.helpers import audit_platform, audit_worker, wait_for_size
from tests.streams.helpers import readings

pytestmark = pytest.mark.stack


async def _verify(platform, pub):
    serde = await platform.serde()
    a = platform.settings.audit
    return await verify_log(
        bootstrap=platform.endpoints().kafka, serde=serde, prefix=platform.topics.prefix,
        audit_topic=platform.topics.topic("audit"),
        source_topics=[platform.topics.topic(f) for f in a.families], log_id=a.log_id, public_key=pub)


def test_every_event_becomes_one_leaf_and_every_proof_verifies(platform, catalog, tmp_path):
    p = audit_platform(platform, tmp_path, head_every_entries=700)
    pub = HybridPublicKey.load(tmp_path / "audit-log.pub.json")

    async def go():
        await p.ensure_topics()
        serde = await p.serde()
        events = readings(10_000, sensors=7)
        events += [example_event(catalog, name, n) for n in range(20) for name in
                   ("TwinRegistered", "CertificateIssued", "CertificateRevoked", "IssuerKeyRegistered")]
        scores = [example_event(catalog, "AnomalyScored", n) for n in range(30)]  # not audited by default
        async with p.publisher(serde) as pub_:
            await pub_.publish_many(events + scores)
        threshold = gc.get_threshold()
        async with audit_worker(p) as proc:
            await wait_for_size(proc, len(events))
            assert proc.writer._encoder is not None  # the fast AuditEntryAppended encoder is in use
            # full collections are rarer while the worker runs (decision 0145), and only then
            assert gc.get_threshold() == (threshold[0], threshold[1], max(threshold[2], FULL_COLLECTION_EVERY))
            await asyncio.sleep(1.5)  # the ticker signs a head over the tail
            assert proc.writer.tree_size == len(events)
        assert gc.get_threshold() == threshold
        store = p.audit_store()
        await store.start()
        try:
            head = await store.latest_head()
            assert head.tree_size == len(events)
            verify_checkpoint(head.note, pub, origin=p.settings.audit.log_id)
            for ev in events[::211] + events[-80:]:  # through the CLI's path (entry, head, tiles)
                doc = await inclusion_document(store, str(ev.event_id))
                assert verify_proof_document(json.loads(json.dumps(doc)), pub).startswith("OK")
                assert doc["source"]["event_type"] == ev.event_type
            # every event of the log: its entry, a proof from the stored tiles, verified against the head
            entries = {e.source_event_id: e for e in await store.entries(0, head.tree_size)}
            tiles = await store.tiles({(lvl, idx) for lvl, idx, _ in await store.all_tiles()})
            reader = TileReader(lambda _w: tiles)
            for ev in events:
                e = entries[str(ev.event_id)]
                verify_inclusion(e.leaf_index, head.tree_size, e.leaf_hash,
                                 reader.inclusion_proof(e.leaf_index, head.tree_size), head.root)
            heads = await store.heads()
            assert len(heads) >= 3
            for a, b in zip(heads, heads[1:]):
                doc = await consistency_document(store, a.tree_size, b.tree_size)
                assert verify_proof_document(doc, pub).startswith("OK")
            # a proof for a different leaf hash fails
            doc = await inclusion_document(store, str(events[5].event_id))
            doc["leaf_index"] += 1
            with pytest.raises(VerificationError):
                verify_proof_document(doc, pub)
        finally:
            await store.close()
        report = await _verify(p, pub)
        assert report.ok, report.divergences
        assert report.leaves == len(events) and report.heads == len(heads)

    asyncio.run(go())
