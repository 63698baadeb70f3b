"""Facts every validation worker needs in full: issuer keys, twins, the certificate index.

A faust GlobalTable written by an agent is not replicated to the other workers
of the group (faust-streaming issue #283, reproduced here with two workers:
each saw only the issuers of its own partitions, certificates stayed pending).
So every worker builds these views itself: one aiokafka consumer without a
group, assigned every partition of the issuers and twins topics and of the
index changelog, reading from the beginning. :meth:`start` returns once the
views reached the log end seen at start, so no certificate is judged against a
trust registry older than the log; afterwards :meth:`run` follows the topics.
"""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from events.reader import ConsumedRecord, log_end_offsets
from streams.validation.judge import Judge

log = structlog.get_logger(__name__)


class IndexView(MutableMapping[bytes, bytes]):
    """Reads from the replica (every worker's writes), writes to the faust GlobalTable (its changelog)
    and to the replica at once, so this worker reads its own writes immediately."""

    def __init__(self, table: MutableMapping[bytes, bytes], replica: dict[bytes, bytes]) -> None:
        self.table = table
        self.replica = replica

    def __getitem__(self, key: bytes) -> bytes:
        return self.replica[key]

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.table[key] = value
        self.replica[key] = value

    def __delitem__(self, key: bytes) -> None:
        del self.table[key]
        self.replica.pop(key, None)

    def __iter__(self):
        return iter(self.replica)

    def __len__(self) -> int:
        return len(self.replica)


class FactReplica:
    def __init__(self, *, bootstrap: str, issuers_topic: str, twins_topic: str, index_topic: str,
                 client_id: str) -> None:
        self.bootstrap = bootstrap
        self.issuers_topic, self.twins_topic, self.index_topic = issuers_topic, twins_topic, index_topic
        self.issuers: dict[bytes, bytes] = {}
        self.twins: dict[bytes, bytes] = {}
        self.index: dict[bytes, bytes] = {}
        self._judge: Judge | None = None
        self.client_id = client_id
        self.ready = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._tps: list[TopicPartition] = []

    def bind(self, judge: Judge) -> None:
        self._judge = judge

    def _new_consumer(self, suffix: str) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", client_id=f"{self.client_id}-{suffix}")

    async def _open(self) -> dict[TopicPartition, int]:
        """The consumer, assigned every partition and at the beginning; the log ends seen now."""
        self._consumer = self._new_consumer("facts")
        await self._consumer.start()
        tps = []
        for topic in (self.issuers_topic, self.twins_topic, self.index_topic):
            parts = self._consumer.partitions_for_topic(topic)
            if parts is None:
                await self._consumer._client.force_metadata_update()  # noqa: SLF001 - fresh topics
                parts = self._consumer.partitions_for_topic(topic) or set()
            tps += [TopicPartition(topic, p) for p in sorted(parts)]
        self._consumer.assign(tps)
        self._tps = tps
        ends = await log_end_offsets(self._consumer, tps)  # Tansu's ListOffsets is low (decision 0004)
        await self._consumer.seek_to_beginning(*tps)
        return ends

    async def _ends_now(self) -> dict[TopicPartition, int]:
        """The log ends seen now, from a consumer of their own: ``log_end_offsets`` moves positions
        and keeps the high watermarks its consumer already knew (stale for one that has read)."""
        probe = self._new_consumer("facts-ends")
        await probe.start()
        try:
            probe.assign(self._tps)
            return await log_end_offsets(probe, self._tps)
        finally:
            await probe.stop()

    async def prefetch(self) -> None:
        """Read the facts up to the log end seen now, without becoming ready: a warm spare does this
        before it waits for its promotion, so that after it only what arrived meanwhile is left to
        read (:meth:`start`; docs/decisions/0077)."""
        ends = await self._open() if self._consumer is None else await self._ends_now()
        while await self._behind(ends):
            await self._fetch()

    async def start(self) -> None:
        """Ready once the views reached the log end seen now: from the beginning, or from where a
        :meth:`prefetch` left them."""
        await self.prefetch()
        self.ready.set()
        log.info("validation.facts_ready", issuers=len(self.issuers), twins=len(self.twins), index=len(self.index))

    async def _behind(self, ends: dict[TopicPartition, int]) -> bool:
        assert self._consumer is not None
        for tp, end in ends.items():
            if await self._consumer.position(tp) < end:
                return True
        return False

    async def run(self) -> None:
        while True:
            await self._fetch()

    async def close(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()

    async def _fetch(self) -> None:
        assert self._consumer is not None and self._judge is not None
        batches = await self._consumer.getmany(timeout_ms=200, max_records=5000)
        for tp, messages in batches.items():
            for m in messages:
                if tp.topic == self.index_topic:
                    if m.value is None:
                        self.index.pop(m.key, None)
                    elif m.key is not None:
                        self.index[m.key] = m.value
                    continue
                rec = ConsumedRecord(tp.topic, tp.partition, m.offset, m.timestamp, m.key, m.value or b"",
                                     None, None)
                # Poison is skipped here: the group's agent dead-letters it, once.
                if tp.topic == self.issuers_topic:
                    await self._judge.on_issuer(rec, dead_letters=False)
                else:
                    await self._judge.on_twin(rec, dead_letters=False)
