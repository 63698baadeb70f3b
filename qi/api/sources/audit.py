"""The transparency log for the API: the latest checkpoint, inclusion proofs, and a leaf's input.

Reads go through :class:`streams.audit.store.AuditStore` and :mod:`streams.audit.prover` (the code
of ``qi audit prove``), one at a time on the store's connection. What does not change per request
is cached: the latest signed head for ``cache_s`` seconds, a proof per (leaf, tree size) and a
leaf's input bytes (read once from Kafka: a record never changes) in bounded LRUs.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections import OrderedDict
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from events.errors import EventsError
from qi.api.errors import NotFound, Unavailable
from streams.audit.errors import AuditError, NotInLog
from streams.audit.hashing import leaf_data, leaf_hash
from streams.audit.prover import _range_hashes
from streams.audit.store import AuditStore, Entry, Head
from streams.audit.tiles import inclusion_ranges
from streams.audit.verifier import parse_checkpoint


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


class _Lru(OrderedDict):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, k, v) -> None:
        self[k] = v
        self.move_to_end(k)
        while len(self) > self.size:
            self.popitem(last=False)


class AuditReader:
    def __init__(self, store: AuditStore, *, bootstrap: str, topic_prefix: str, public_key: dict[str, Any] | None,
                 serde_factory, cache_s: float = 1.0, client_id: str = "qi-api-audit") -> None:
        self._store = store
        self._serde_factory = serde_factory
        self._serde = None
        self._values: _Lru = _Lru(10_000)
        self._bootstrap, self._prefix, self._client_id = bootstrap, topic_prefix, client_id
        self.public_key = public_key
        self._cache_s = cache_s
        self._lock = asyncio.Lock()
        self._kafka_lock = asyncio.Lock()
        self._started = False
        self._head: tuple[float, Head | None] = (0.0, None)
        self._proofs: _Lru = _Lru(10_000)
        self._entries: _Lru = _Lru(10_000)
        self._leaves: _Lru = _Lru(10_000)
        self._consumer: AIOKafkaConsumer | None = None

    @property
    def log_id(self) -> str:
        return self._store.log_id

    async def start(self) -> None:
        pass  # the store connects on first use: the API starts even while Postgres is down

    async def close(self) -> None:
        await self._store.close()
        if self._consumer is not None:
            await self._consumer.stop()

    async def _call(self, fn):
        async with self._lock:
            try:
                if not self._started:
                    await self._store.start()
                    self._started = True
                return await fn(self._store)
            except NotInLog:
                raise
            except (AuditError, psycopg.Error, OSError) as e:
                self._started = False
                await self._store.close()
                raise Unavailable(f"the audit log (Postgres) failed: {type(e).__name__}; retry later") from e

    async def latest_head(self) -> Head | None:
        at, head = self._head
        if head is None or time.monotonic() - at > self._cache_s:
            head = await self._call(lambda s: s.latest_head())
            self._head = (time.monotonic(), head)
        return head

    async def checkpoint(self) -> dict[str, Any]:
        head = await self.latest_head()
        if head is None:
            raise NotFound("the log has no signed checkpoint yet")
        return checkpoint_doc(head)

    async def entry(self, event_id: str) -> Entry:
        e = self._entries.get(event_id)
        if e is None:
            e = await self._call(lambda s: s.entry_for_event(event_id))
            if e is None:
                raise NotFound(f"event {event_id} is not in log {self.log_id} (yet)", field="event_id")
            self._entries.put(event_id, e)
        return e

    async def proof(self, event_id: str) -> dict[str, Any]:
        """The inclusion proof of an event against the latest head, with the leaf's input bytes."""
        entry = await self.entry(event_id)
        head = await self.latest_head()
        if head is None or head.tree_size <= entry.leaf_index:
            raise NotFound(f"leaf {entry.leaf_index} is not covered by a signed head yet; retry after the next head",
                           field="event_id")
        key = (entry.leaf_index, head.tree_size)
        doc = self._proofs.get(key)
        if doc is None:
            hashes = await self._call(lambda s: _range_hashes(s, inclusion_ranges(entry.leaf_index, head.tree_size)))
            data = await self.leaf_input(entry)
            doc = {
                "log_id": self.log_id, "event_id": event_id, "leaf_index": entry.leaf_index,
                "tree_size": head.tree_size, "leaf_hash": b64(entry.leaf_hash),
                "leaf_data": b64(data) if data is not None else None,
                "leaf_data_matches": (leaf_hash(data) == entry.leaf_hash) if data is not None else None,
                "hashes": [b64(h) for h in hashes],
                "source": {"topic": entry.source_topic, "partition": entry.source_partition,
                           "offset": entry.source_offset, "event_type": entry.source_event_type},
                "checkpoint": checkpoint_doc(head),
            }
            self._proofs.put(key, doc)
        return doc

    async def leaf_input(self, entry: Entry) -> bytes | None:
        """The leaf's data (docs/audit.md section 2), rebuilt from the Kafka record; None if unreadable."""
        key = (entry.source_topic, entry.source_partition, entry.source_offset)
        if key in self._leaves:
            return self._leaves[key]
        async with self._kafka_lock:
            try:
                if self._consumer is None:
                    self._consumer = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, enable_auto_commit=False,
                                                      client_id=self._client_id, request_timeout_ms=10_000)
                    await self._consumer.start()
                tp = TopicPartition(entry.source_topic, entry.source_partition)
                self._consumer.assign([tp])
                self._consumer.seek(tp, entry.source_offset)
                deadline = time.monotonic() + 5.0
                while time.monotonic() < deadline:
                    got = await self._consumer.getmany(tp, timeout_ms=500, max_records=1)
                    for m in got.get(tp, []):
                        if m.offset == entry.source_offset:
                            canonical = entry.source_topic[len(self._prefix):] if self._prefix and \
                                entry.source_topic.startswith(self._prefix) else entry.source_topic
                            data = leaf_data(canonical, m.partition, m.offset, m.key, m.value or b"")
                            self._leaves.put(key, data)
                            self._values.put(key, m.value or b"")
                            return data
                        break
                return None
            except KafkaError:
                return None

    async def issued_signatures(self, proof: dict[str, Any]) -> list[dict[str, str]]:
        """key id and algorithm of each signature of the event a proof covers (decoded from its record)."""
        src = proof["source"]
        value = self._values.get((src["topic"], src["partition"], src["offset"]))
        if value is None:
            return []
        try:
            if self._serde is None:
                self._serde = await self._serde_factory()
            record = (await self._serde.decode_resolving(value, plain=True)).record
        except (EventsError, OSError):
            return []
        return [{"key_id": str(s["key_id"]), "algorithm": str(s["algorithm"])} for s in record.get("signatures") or []]

    async def ping(self) -> bool:
        try:
            await self.latest_head()
            return True
        except Unavailable:
            return False


def checkpoint_doc(head: Head) -> dict[str, Any]:
    """The signed note, its signed body and each signature line decoded (for a browser's WebCrypto)."""
    cp = parse_checkpoint(head.note)
    algs = [s.get("algorithm") for s in head.signatures]
    sigs = [{"name": name, "algorithm": algs[i] if i < len(algs) else None, "key_id": b64(kid), "signature": b64(sig)}
            for i, (name, kid, sig) in enumerate(cp.signatures)]
    return {"origin": cp.origin, "tree_size": head.tree_size, "root": b64(head.root), "text": head.note,
            "body": cp.body, "signed_at": head.signed_at, "signatures": sigs}
