"""The writer against real Postgres: lost connections, a second writer, redelivered records."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from events.signing import HybridKeyPair
from streams.audit.errors import AuditStoreError, WriterConflict
from streams.audit.verifier import merkle_root
from streams.audit.writer import AuditWriter
from streams.audit.hashing import record_leaf_hash
from tests.streams.audit.helpers import Rec

pytestmark = pytest.mark.stack


def _recs(topic: str, part: int, start: int, n: int) -> list[Rec]:
    return [Rec(topic, part, o, b"k", b"v%d" % o) for o in range(start, start + n)]


async def _writer(platform, log_id: str) -> AuditWriter:
    from streams.audit.store import AuditStore

    kp = HybridKeyPair.generate(key_id="w/1")
    store = AuditStore(platform.endpoints().postgres, log_id)
    w = AuditWriter(store, kp, await platform.serde(), platform.topics, log_id=log_id, head_every_entries=50,
                    head_every_s=1e9)
    await w.start()
    return w


def test_reconnects_after_postgres_drops_the_connection_and_never_doubles_a_leaf(platform):
    async def go():
        w = await _writer(platform, f"w.local/{platform.topics.prefix}a")
        t = platform.topics.topic("twins")
        await w.append(_recs(t, 0, 0, 30))
        pid = w._store._conn.info.backend_pid
        async with await psycopg.AsyncConnection.connect(platform.endpoints().postgres, autocommit=True) as c:
            await c.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(AuditStoreError) as e:
            await w.append(_recs(t, 0, 30, 30))
        assert e.value.retriable
        await w.append(_recs(t, 0, 30, 30))          # the retry, on a new connection
        await w.append(_recs(t, 0, 0, 60))           # a redelivery of everything: no new leaves
        assert w.tree_size == 60
        entries = await w._store.entries(0, 60)
        assert [e.source_offset for e in entries] == list(range(60))
        leaves = [record_leaf_hash("qi.twins.v1", 0, o, b"k", b"v%d" % o) for o in range(60)]
        assert w.root() == merkle_root(leaves)
        assert [h.tree_size for h in await w._store.heads()] == [50]
        await w.close()

    asyncio.run(go())


def test_a_second_writer_cannot_fork_the_tree(platform):
    async def go():
        log_id = f"w.local/{platform.topics.prefix}b"
        a, b = await _writer(platform, log_id), await _writer(platform, log_id)
        t = platform.topics.topic("twins")
        await a.append(_recs(t, 0, 0, 10))
        with pytest.raises(WriterConflict):
            await b.append(_recs(t, 1, 0, 10))       # b loaded size 0; a moved it to 10
        await b.append(_recs(t, 1, 0, 10))           # b reloaded: appends after a's leaves
        assert b.tree_size == 20
        await a.reload()
        assert a.tree_size == 20 and a.root() == b.root()
        for w in (a, b):
            await w.close()

    asyncio.run(go())


def test_a_commit_that_landed_despite_an_error_still_gets_its_events_published(platform):
    """The connection dies after Postgres committed: the retry appends nothing new, yet returns the
    committed leaves' AuditEntryAppended events (they were never published)."""
    async def go():
        w = await _writer(platform, f"w.local/{platform.topics.prefix}c")
        t = platform.topics.topic("twins")
        real_commit = w._store.commit

        async def commit_then_fail(batch):
            await real_commit(batch)
            raise AuditStoreError("connection lost after COMMIT", retriable=True)

        w._store.commit = commit_then_fail
        with pytest.raises(AuditStoreError):
            await w.append(_recs(t, 0, 0, 20))
        w._store.commit = real_commit
        outs = await w.append(_recs(t, 0, 0, 20))  # the runner's retry of the same batch
        assert w.tree_size == 20
        serde = await platform.serde()
        leaves = sorted(serde.decode(o.value).record["leaf_index"] for o in outs
                        if serde.decode(o.value).event_type == "AuditEntryAppended")
        assert leaves == list(range(20))
        await w.close()

    asyncio.run(go())
