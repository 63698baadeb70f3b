"""The audit worker: a batch-runner processor appending every record it reads to the log.

Positions come from the log's own store (``assigned``), not the consumer group, so the tree and
the source positions can never disagree. Within a batch, records are ordered by (topic,
partition, offset); the order of the tree is fixed the moment a batch commits (decision 0041).
An idle log still gets a signed head every ``head_every_s`` (a small ticker task).

Pipelined (decision 0140): ``process`` only *prepares* a batch (leaves, tree, rows, events: the
CPU part) and hands it to two background stages, a committer (one Postgres transaction per batch,
in order) and a publisher (the batch's AuditEntryAppended/TreeHeadSigned, only after its commit),
so batch N's commit and publish overlap batch N+1's hashing. ``process`` returns no outputs; the
runner's consumer offsets do not matter (positions come from Postgres). At most ``depth`` batches
are unacknowledged. A failed commit drops every prepared batch after it (the writer reloads the
committed state); their records are kept and prepared again, so none is skipped or doubled. A
rebalance, the ticker's heads and ``close`` drain the pipeline first.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from dataclasses import dataclass

import structlog
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from events.errors import PublishError
from events.publisher import Publisher
from events.reader import ConsumedRecord
from streams.audit.errors import AuditStoreError, WriterConflict
from streams.audit.metrics import audit_registry
from streams.audit.writer import AuditWriter, PreparedBatch
from streams.errors import RetriableError
from streams.processor import BatchResult, Processor

log = structlog.get_logger(__name__)

#: The collector's third threshold while the worker runs (decision 0145): a full collection after this
#: many young-generation-1 collections, not after 10. Each batch leaves ~100,000 tracked objects alive
#: for a while (the pipeline holds ~3 batches), so the default made one full collection per batch, each
#: walking every live batch object and finding almost nothing (11 per 200,000 leaves, ~0.65 s).
FULL_COLLECTION_EVERY = 100


@dataclass
class _InFlight:
    prepared: PreparedBatch
    records: list  # kept until committed: prepared again if a commit before it fails


class AuditProcessor(Processor):
    name = "audit"
    decode = "envelope"  # a leaf is the record's bytes; only the event id and type are read (decision 0046)

    def __init__(self, writer: AuditWriter, publisher: Publisher, *, families: list[str],
                 head_every_s: float, max_batch: int | None = None, depth: int = 2) -> None:
        self.writer = writer
        self.max_batch = max_batch  # type: ignore[misc]  # QI_AUDIT_MAX_BATCH: per-batch costs amortise
        self.families = tuple(families)  # type: ignore[misc]  # per deployment (QI_AUDIT_FAMILIES)
        self._publisher = publisher
        self._head_every_s = head_every_s
        self._lock = asyncio.Lock()
        self._ticker: asyncio.Task | None = None
        self._registry = audit_registry(writer)
        self._depth = max(1, depth)
        self._to_commit: asyncio.Queue[_InFlight] = asyncio.Queue()
        self._to_publish: asyncio.Queue[_InFlight] = asyncio.Queue()
        self._unacked = 0  # batches handed to the pipeline and not yet acknowledged by the broker
        self._progress = asyncio.Condition()
        self._failure: BaseException | None = None  # a commit failed: the pipeline holds back
        self._failed: list[_InFlight] = []  # batches not committed because of it, in order
        self._replay: list = []  # their records, for the next prepare
        self._stages: list[asyncio.Task] = []
        self._gc_threshold: tuple[int, int, int] | None = None  # the collector's, restored at close

    def registries(self) -> list[CollectorRegistry]:
        return [self._registry]

    async def start(self) -> None:
        await self._publisher.start()
        await self.writer.start()
        recovered = await self.writer.recover_outputs()
        if recovered:  # committed leaves whose events may not have reached Kafka before a crash
            await self._publisher.publish_all(recovered)
            await self.writer.flush()
            log.info("audit.republished", records=len(recovered), tree_size=self.writer.tree_size)
        self._stages = [asyncio.create_task(self._committer()), asyncio.create_task(self._publisher_stage())]
        self._ticker = asyncio.create_task(self._tick())
        # what exists now (modules, schemas, the serde, the loaded tree) lives as long as the worker:
        # out of the collector's sight, a full collection scans only what batches create (decision 0143)
        gc.collect()
        gc.freeze()
        # full collections every FULL_COLLECTION_EVERY, not every 10, young collections: they only ever
        # walk the batches in flight and find almost nothing there (decision 0145); cycles are still found
        if self._gc_threshold is None:
            self._gc_threshold = gc.get_threshold()
            t0, t1, t2 = self._gc_threshold
            gc.set_threshold(t0, t1, max(t2, FULL_COLLECTION_EVERY))
        log.info("audit.started", log_id=self.writer.log_id, tree_size=self.writer.tree_size)

    async def assigned(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int]:
        async with self._lock:
            try:
                await self._drain()
                # the runner seeks to the committed positions: dropped records are read again
                await self._requeue_failed(replay=False)
                await self.writer.reload()  # another writer may have advanced the tree meanwhile
            except AuditStoreError as e:
                raise RetriableError(str(e), dependency="postgres") from e
            known = self.writer.positions()
        return {tp: known.get((tp.topic, tp.partition), 0) for tp in partitions}

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        async with self._lock:
            await self._drain()  # the partitions leave with every prepared leaf committed

    async def process(self, records: list[ConsumedRecord]) -> BatchResult:
        async with self._lock:
            try:
                await self._requeue_failed()
                await self._prepare_and_queue(records)
            except WriterConflict as e:  # the writer reloaded: retry the batch on the new tree
                raise RetriableError(str(e), dependency="audit-log") from e
            except AuditStoreError as e:
                raise RetriableError(str(e), dependency="postgres") from e
            except RetriableError:
                raise
            except Exception as e:  # never let the runner dead-letter a record: the log would skip a leaf
                log.error("audit.append_failed", error=repr(e), records=len(records))
                raise RetriableError(f"audit append failed: {e!r}", dependency="audit-log") from e
            return BatchResult()  # the publisher stage publishes once the batch is committed

    async def flush(self) -> None:
        """Nothing to wait for (the runner's offsets are not the log's positions); a failed commit
        of an earlier batch is handled here too, so an idle worker repairs it."""
        async with self._lock:
            try:
                await self._requeue_failed()
            except AuditStoreError as e:
                raise RetriableError(str(e), dependency="postgres") from e

    # ---------------------------------------------------------------- the pipeline

    async def _prepare_and_queue(self, records: list) -> None:
        if self._replay:
            records, self._replay = self._replay + list(records), []
        async with self._progress:  # bounded: at most ``depth`` batches unacknowledged
            await self._progress.wait_for(lambda: self._unacked < self._depth or self._failure is not None)
        if self._failure is not None:  # a commit failed while we waited: this batch comes again with the rest
            self._replay = list(records)
            await self._requeue_failed()
            return
        gc_was_on = gc.isenabled()
        gc.disable()  # prepare allocates ~5 objects per leaf, all kept: collections mid-batch only re-scan them
        try:
            # envelope-decoded: every event id is None or a checked UUID string
            prepared = self.writer.prepare(records, ids_checked=self.decode == "envelope")
        except Exception:
            self._replay = list(records)  # never lose a kept record: a gap would be skipped for good
            raise
        finally:
            if gc_was_on:
                gc.enable()
        if prepared is None:
            return
        self._unacked += 1
        self._to_commit.put_nowait(_InFlight(prepared, records))

    async def _committer(self) -> None:
        while True:
            item = await self._to_commit.get()
            try:
                if self._failure is None:
                    try:
                        await self.writer.commit_prepared(item.prepared)
                    except Exception as e:  # noqa: BLE001 - the writer reloaded; the records come again
                        log.warning("audit.commit_failed", error=repr(e), leaves=len(item.prepared.commit.entries))
                        self._failure = e
                if self._failure is not None:  # never commit a batch prepared on a dropped one
                    self._failed.append(item)
                    async with self._progress:
                        self._unacked -= 1
                        self._progress.notify_all()
                else:
                    self._to_publish.put_nowait(item)
            finally:
                self._to_commit.task_done()

    async def _publisher_stage(self) -> None:
        delay = 0.1
        while True:
            item = await self._to_publish.get()
            try:
                while True:
                    try:
                        await self._publisher.publish_all(item.prepared.outputs)
                        break
                    except Exception as e:  # noqa: BLE001 - committed: its events must get out
                        log.warning("audit.publish_failed", error=repr(e), retry_in_s=delay)
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, 5.0)
                delay = 0.1
                self.writer.acked(item.prepared)  # noted in Postgres with the next commit or tick
                async with self._progress:
                    self._unacked -= 1
                    self._progress.notify_all()
            finally:
                self._to_publish.task_done()

    async def _drain(self) -> None:
        """Wait until every prepared batch is committed and published (or dropped by a failure)."""
        await self._to_commit.join()
        await self._to_publish.join()

    async def _requeue_failed(self, *, replay: bool = True) -> None:
        """After a failed commit: reload the committed state, publish the events of leaves a failed
        commit may have landed anyway, and prepare the dropped batches' records again (``replay``;
        else they are dropped: after a rebalance the runner reads them again). Raises if Postgres
        cannot be read; the records stay kept for the next try."""
        if self._failure is None:
            return
        await self._drain()
        self._replay = [r for item in self._failed for r in item.records] + self._replay
        self._failed = []
        try:
            await self.writer.reload()  # nothing in flight: the committed state
            recovered = await self.writer.recover_outputs()
            if recovered:
                await self._publisher.publish_all(recovered)
            await self.writer.flush()  # every committed leaf is acknowledged now
        except PublishError as e:
            raise RetriableError(str(e), dependency="kafka") from e
        self._failure = None
        log.info("audit.replaying", records=len(self._replay), republished=len(recovered),
                 tree_size=self.writer.tree_size)
        if not replay:
            self._replay = []
        elif self._replay:
            await self._prepare_and_queue([])

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(min(self._head_every_s, 5.0) / 2)
            try:
                async with self._lock:
                    await self._requeue_failed()
                    if not self.writer.head_due():
                        if not self._unacked:
                            await self.writer.write_marks()  # acknowledgements of an idle pipeline
                        continue
                    await self._drain()
                    await self._requeue_failed()
                    if self._unacked:
                        continue
                    outs = await self.writer.sign_if_due()
                    if outs:
                        await self._publisher.publish_all(outs)
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
        if self._stages:
            try:
                async with self._lock:  # a batch not committed here is read again by the next worker
                    await asyncio.wait_for(self._drain(), timeout=30)
            except TimeoutError:
                log.warning("audit.close_undrained", batches=self._unacked)
            for t in self._stages:
                t.cancel()
            for t in self._stages:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            self._stages = []
            try:
                await self.writer.write_marks()
            except Exception as e:  # noqa: BLE001 - the next start republishes (same event ids)
                log.warning("audit.marks_failed", error=repr(e))
        await self._publisher.close()
        await self.writer.close()
        gc.unfreeze()  # a process that goes on (tests, the benchmark) collects them again
        if self._gc_threshold is not None:
            gc.set_threshold(*self._gc_threshold)
            self._gc_threshold = None
