"""The audit worker: a batch-runner processor appending every record it reads to the log.

Positions come from the log's own store (``assigned``), not the consumer group, so the tree and
the source positions can never disagree. Within a batch, records are ordered by (topic,
partition, offset); the order of the tree is fixed the moment a batch commits (decision 0041).
An idle log still gets a signed head every ``head_every_s`` (a small ticker task).
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from events.publisher import Publisher
from events.reader import ConsumedRecord
from streams.audit.errors import AuditStoreError, WriterConflict
from streams.audit.metrics import audit_registry
from streams.audit.writer import AuditWriter
from streams.errors import RetriableError
from streams.processor import BatchResult, Processor

log = structlog.get_logger(__name__)


class AuditProcessor(Processor):
    name = "audit"
    decode = "envelope"  # a leaf is the record's bytes; only the event id and type are read (decision 0046)

    def __init__(self, writer: AuditWriter, publisher: Publisher, *, families: list[str],
                 head_every_s: float, max_batch: int | None = None) -> None:
        self.writer = writer
        self.max_batch = max_batch  # type: ignore[misc]  # QI_AUDIT_MAX_BATCH: per-batch costs amortise
        self.families = tuple(families)  # type: ignore[misc]  # per deployment (QI_AUDIT_FAMILIES)
        self._publisher = publisher
        self._head_every_s = head_every_s
        self._lock = asyncio.Lock()
        self._ticker: asyncio.Task | None = None
        self._registry = audit_registry(writer)

    def registries(self) -> list[CollectorRegistry]:
        return [self._registry]

    async def start(self) -> None:
        await self._publisher.start()
        await self.writer.start()
        recovered = await self.writer.recover_outputs()
        if recovered:  # committed leaves whose events may not have reached Kafka before a crash
            await self._publisher.publish_records(recovered)
            await self.writer.flush()
            log.info("audit.republished", records=len(recovered), tree_size=self.writer.tree_size)
        self._ticker = asyncio.create_task(self._tick())
        log.info("audit.started", log_id=self.writer.log_id, tree_size=self.writer.tree_size)

    async def assigned(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int]:
        async with self._lock:
            try:
                await self.writer.reload()  # another writer may have advanced the tree meanwhile
            except AuditStoreError as e:
                raise RetriableError(str(e), dependency="postgres") from e
            known = self.writer.positions()
        return {tp: known.get((tp.topic, tp.partition), 0) for tp in partitions}

    async def process(self, records: list[ConsumedRecord]) -> BatchResult:
        async with self._lock:
            try:
                return BatchResult(outputs=await self.writer.append(records))
            except WriterConflict as e:  # the writer reloaded: retry the batch on the new tree
                raise RetriableError(str(e), dependency="audit-log") from e
            except AuditStoreError as e:
                raise RetriableError(str(e), dependency="postgres") from e
            except Exception as e:  # never let the runner dead-letter a record: the log would skip a leaf
                log.error("audit.append_failed", error=repr(e), records=len(records))
                raise RetriableError(f"audit append failed: {e!r}", dependency="audit-log") from e

    async def flush(self) -> None:
        async with self._lock:
            try:
                await self.writer.flush()
            except AuditStoreError as e:
                raise RetriableError(str(e), dependency="postgres") from e

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(min(self._head_every_s, 5.0) / 2)
            try:
                async with self._lock:
                    outs = await self.writer.sign_if_due()
                    if outs:
                        await self._publisher.publish_records(outs)
                        await self.writer.mark_ticker_heads_published()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - a head can wait for the next tick
                log.warning("audit.head_failed", error=repr(e))

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        await self._publisher.close()
        await self.writer.close()
