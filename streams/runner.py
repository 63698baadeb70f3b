"""The batch runner: the one consumer loop of every high-volume worker.

Per fetch::

    getmany ─► decode all ─► processor.process(batch) ─► publish outputs + dead letters
            (poison ─► DL)    (RetriableError: retry      (one publish_all call;
                               same batch with backoff;    retried with backoff until
                               other errors: one by one,   Kafka acknowledges all)
                               failing records ─► DL)              │
                                                                   ▼
                                     commit input offsets ◄─ processor.flush()

Input offsets are committed only after every output of the batch is
acknowledged and the processor has flushed, so a crash anywhere redelivers
the batch (at-least-once); outputs carry ids derived from their inputs, so
sinks deduplicate. A processor whose sink stores its own positions (``commit_every_s``, the
projections) has the group's offsets committed in the background at most that often instead:
they are not its checkpoint, and the broker's offset commit (object writes on the durable log)
would otherwise hold up every batch (docs/decisions/0066). The runner does not fetch while a batch is in flight, and
pauses its partitions while it retries, so memory is bounded by one batch
plus the consumer's fetch buffer.

Rebalance: ``on_partitions_revoked`` waits for the batch in flight to be
committed, then tells the processor; ``on_partitions_assigned`` asks the
processor where to start (a sink's stored positions) and seeks there.
SIGTERM (the ``stop`` event): the batch in flight finishes and is committed,
then the consumer leaves the group.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from events.errors import DecodeError, NotFramedError, PublishError, RegistryError, UnknownSchemaError
from events.publisher import OutgoingRecord, Publisher
from events.reader import ConsumedRecord
from events.serde import Serde
from events.topics import TopicNames
from qi.config import RunnerSettings
from streams.deadletter import dead_letter_record
from streams.errors import RetriableError, RunnerError
from streams.membership import MemberFile, consumer_member
from streams.metrics import RunnerMetrics
from streams.processor import BatchResult, Poison, Processor

log = structlog.get_logger(__name__)
T = TypeVar("T")


class _Stopping(Exception):
    """Stop was requested while a batch was being retried: abandon it uncommitted."""


class BatchRunner:
    """Runs one :class:`Processor` in a consumer group. Build with ``Platform.batch_runner``."""

    def __init__(
        self,
        *,
        bootstrap: str,
        group_id: str,
        client_id: str,
        processor: Processor,
        publisher: Publisher,
        serde: Serde,
        topics: TopicNames,
        settings: RunnerSettings,
        metrics: RunnerMetrics | None = None,
        member_file: MemberFile | None = None,
    ) -> None:
        self._bootstrap = bootstrap
        self._group_id = group_id
        self._client_id = client_id
        self._processor = processor
        self._publisher = publisher
        self._serde = serde
        self._topics = topics
        self._settings = settings
        self.metrics = metrics or RunnerMetrics(worker=processor.name)
        self._retrying_now = 0
        self._epoch = 0  # bumped by every rebalance: a fetch from before it is stale
        self._sought: dict[TopicPartition, int] = {}  # positions the processor chose at assignment
        self._joined = False
        self._last_lag_check = 0.0
        self._input_topics = [topics.topic(f) for f in processor.families]
        self._plain = processor.decode == "plain"
        self._envelope = processor.decode == "envelope"
        self._max_batch = processor.max_batch or settings.max_batch  # a processor may ask for its own
        self._lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._stop: asyncio.Event | None = None
        self._log = log.bind(worker=processor.name, group=group_id)
        self._member_file = member_file  # a supervised instance: evict its dead predecessor (0073)
        self._last_report = time.monotonic()
        # processors checkpointed by their sink: group offsets committed in the background (0066)
        self._uncommitted: dict[TopicPartition, int] = {}
        self._commit_task: asyncio.Task[None] | None = None
        self._last_commit = 0.0
        self._handed_since_end = False  # a batch was handled since the processor was told caught_up()

    @property
    def processor(self) -> Processor:
        return self._processor

    def assignment(self) -> set[TopicPartition]:
        return set(self._consumer.assignment()) if self._consumer else set()

    # --- lifecycle -------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; then finish the batch in flight, commit, leave the group."""
        self._stop = stop
        s = self._settings
        await self._processor.start()
        try:
            await self._retrying("connect to Kafka", self._publisher.start)
            self._consumer = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap,
                group_id=self._group_id,
                client_id=self._client_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=s.session_timeout_ms,
                heartbeat_interval_ms=s.heartbeat_interval_ms,
                max_poll_interval_ms=s.max_poll_interval_ms,
                max_partition_fetch_bytes=s.max_partition_fetch_bytes,
                fetch_max_bytes=s.fetch_max_bytes,
            )
            await self._check_topics()
            self._consumer.subscribe(topics=self._input_topics, listener=_Listener(self))
            await self._evict_predecessor()
            await self._retrying("join the consumer group", self._consumer.start)
            self._log.info("runner.started", topics=self._input_topics)
            while not stop.is_set():
                epoch = self._epoch
                try:
                    fetched = await self._consumer.getmany(timeout_ms=s.poll_timeout_ms, max_records=self._max_batch)
                except KafkaError as e:
                    self._log.warning("runner.fetch_failed", error=str(e))
                    await asyncio.sleep(s.retry_initial_s)
                    continue
                if fetched:
                    async with self._lock:
                        if epoch != self._epoch:
                            self._rewind(fetched)
                            continue
                        try:
                            await self._handle(fetched)
                        except _Stopping:
                            self._log.info("runner.batch_abandoned", reason="stop requested during retries")
                            break
                        self._handed_since_end = True
                await self._refresh_lag()
                if self._handed_since_end and self._at_log_end():  # after a batch, or once the lag is known
                    self._handed_since_end = False
                    await self._processor.caught_up()
                self._maybe_report()
        finally:
            await self._shutdown()

    async def _check_topics(self) -> None:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap, client_id=self._client_id)
        await self._retrying("connect to Kafka", admin.start)
        try:
            known = set(await admin.list_topics())
        finally:
            await admin.close()
        missing = [t for t in self._input_topics if t not in known]
        if missing:
            raise RunnerError(f"no such topic: {', '.join(missing)} (create them with `qi topics create`)")

    async def _evict_predecessor(self) -> None:
        """The previous process of this instance, if it died in the group, leaves it now (0073)."""
        if self._member_file is not None:
            await self._member_file.evict_predecessor(self._bootstrap, client_id=self._client_id)

    async def _shutdown(self) -> None:
        if self._consumer is not None:
            try:
                await self._commit_pending()
                await self._consumer.stop()  # leaves the group
                if self._member_file is not None:
                    self._member_file.clear()
            except KafkaError as e:  # pragma: no cover - broker gone while stopping
                self._log.warning("runner.leave_failed", error=str(e))
        await self._publisher.close()
        await self._processor.close()
        self._log.info("runner.stopped", **self.metrics.snapshot())

    # --- one batch ---------------------------------------------------------------------------
    async def _handle(self, fetched: dict[TopicPartition, list]) -> None:
        t0 = time.perf_counter()
        good: list[ConsumedRecord] = []
        dead: list[OutgoingRecord] = []
        ends: dict[TopicPartition, int] = {}
        decode = self._decode_value  # the processor's decode mode (envelope for the audit log)
        keep = good.append
        for tp, messages in fetched.items():
            if not messages:
                continue
            ends[tp] = messages[-1].offset + 1
            topic, partition = tp.topic, tp.partition
            for m in messages:
                value = m.value
                if value is not None:  # fast path: a record that decodes needs no await
                    try:
                        decoded = decode(value)
                    except DecodeError:
                        pass  # the full path below decides (unknown schema id, poison)
                    else:
                        keep(ConsumedRecord(topic, partition, m.offset, m.timestamp, m.key, value, decoded, None))
                        continue
                rec, error = await self._decode(tp, m)
                if error is None:
                    good.append(rec)
                else:
                    dead.append(self._dead(rec, error.kind, str(error)))
        result = await self._process(good) if good else BatchResult()
        dead.extend(self._dead(p.record, p.kind, p.message) for p in result.poison)
        outputs = result.outputs + dead
        if outputs:
            await self._retrying("publish outputs", lambda: self._publisher.publish_all(outputs))
            for topic, n in Counter(rec.topic for rec in outputs).items():
                self.metrics.count_produced(topic, n)
        await self._retrying("flush processor state", self._processor.flush)
        await self._commit(ends)
        for tp, messages in fetched.items():  # counted once committed: a rewound fetch is not counted twice
            if messages:
                self.metrics.count_consumed(tp.topic, len(messages))
        for p in result.poison:
            self.metrics.count_dead(p.record.topic)
        self.metrics.observe_batch(sum(len(m) for m in fetched.values()), time.perf_counter() - t0)
        newest_ms = max((m[-1].timestamp or 0 for m in fetched.values() if m), default=0)
        if newest_ms:
            self.metrics.set_record_age(time.time() - newest_ms / 1000)

    async def _decode(self, tp: TopicPartition, m) -> tuple[ConsumedRecord, DecodeError | None]:
        value = m.value
        decoded, error = None, None
        if value is None:
            error = NotFramedError("record has no value (tombstone)")
        else:
            try:
                decoded = self._decode_value(value)
            except UnknownSchemaError as e:
                try:
                    await self._retrying("fetch a writer schema", lambda: self._serde.resolve(e.schema_id))
                    decoded = self._decode_value(value)
                except DecodeError as e2:
                    error = e2
            except DecodeError as e:
                error = e
        if error is not None:
            self.metrics.count_dead(tp.topic)
        rec = ConsumedRecord(tp.topic, tp.partition, m.offset, m.timestamp, m.key, value or b"", decoded, error)
        return rec, error

    def _decode_value(self, value: bytes):  # -> Decoded
        if self._envelope:
            return self._serde.decode_envelope(value)
        return self._serde.decode(value, plain=self._plain)

    async def _process(self, records: list[ConsumedRecord]) -> BatchResult:
        try:
            return await self._retrying("process a batch", lambda: self._processor.process(records))
        except _Stopping:
            raise
        except Exception as e:  # a processor bug or a poison record: isolate it, never die of it
            self._log.warning("runner.batch_failed_isolating", error=repr(e), records=len(records))
        out = BatchResult()
        for rec in records:
            try:
                one = await self._retrying("process a record", lambda r=rec: self._processor.process([r]))
            except _Stopping:
                raise
            except Exception as e:
                self._log.warning("runner.record_failed", topic=rec.topic, partition=rec.partition,
                                  offset=rec.offset, error=repr(e))
                out.poison.append(Poison(rec, "PROCESSING_ERROR", f"{type(e).__name__}: {e}"))
                continue
            out.outputs.extend(one.outputs)
            out.poison.extend(one.poison)
        return out

    def _dead(self, rec: ConsumedRecord, kind, message: str) -> OutgoingRecord:
        return dead_letter_record(self._serde, self._topics, rec, kind, message, self._processor.name)

    async def _commit(self, ends: dict[TopicPartition, int]) -> None:
        assert self._consumer is not None
        if not ends:
            return
        every = self._processor.commit_every_s
        if every is None:
            await self._commit_now(ends)
        else:  # the sink holds the checkpoint: commit later, in the background, never awaited here
            self._uncommitted.update(ends)
            now = time.monotonic()
            if (self._commit_task is None or self._commit_task.done()) and now - self._last_commit >= every:
                pending, self._uncommitted, self._last_commit = self._uncommitted, {}, now
                self._commit_task = asyncio.create_task(self._commit_now(pending))
        for tp, end in ends.items():
            hw = self._consumer.highwater(tp)
            if hw is not None:
                self.metrics.set_lag(tp.topic, tp.partition, max(hw - end, 0), end=hw)

    async def _commit_now(self, ends: dict[TopicPartition, int]) -> None:
        assert self._consumer is not None
        try:
            await self._consumer.commit(ends)
        except (CommitFailedError, IllegalStateError) as e:
            # The partitions moved to another member, which will redo this batch: its outputs
            # carry the same event ids, so this costs duplicates, never loss.
            self._log.warning("runner.commit_failed", error=str(e))
        except KafkaError as e:
            self._log.warning("runner.commit_failed", error=str(e), retriable=getattr(e, "retriable", False))

    async def _commit_pending(self) -> None:
        """Wait for a background commit in flight, then commit what is left (before leaving the
        group or letting partitions go)."""
        task, self._commit_task = self._commit_task, None
        if task is not None:
            await task
        if self._uncommitted:
            pending, self._uncommitted = self._uncommitted, {}
            await self._commit_now(pending)

    async def _retrying(self, what: str, op: Callable[[], Awaitable[T]]) -> T:
        """Run ``op``; on a transient failure pause, back off (with jitter) and try again until stopped."""
        s = self._settings
        delay = s.retry_initial_s
        paused = False
        first_failure: float | None = None
        try:
            while True:
                try:
                    result = await op()
                    if first_failure is not None:
                        self._log.info("runner.recovered", operation=what,
                                       outage_s=round(time.monotonic() - first_failure, 1))
                    return result
                except (RetriableError, RegistryError, PublishError, KafkaError) as e:
                    if not getattr(e, "retriable", True) and not isinstance(e, KafkaError):
                        raise
                    if first_failure is None:
                        first_failure = time.monotonic()
                        self._retrying_now += 1
                    self.metrics.count_retry(what)
                    self._log.warning("runner.retrying", operation=what, error=str(e), backoff_s=round(delay, 2))
                    if not paused and self._consumer is not None and self._consumer.assignment():
                        self._consumer.pause(*self._consumer.assignment())
                        paused = True
                if self._stop is not None and self._stop.is_set():
                    raise _Stopping()
                await asyncio.sleep(delay * (0.5 + random.random() / 2))
                delay = min(delay * 2, s.retry_max_s)
        finally:
            if first_failure is not None:
                self._retrying_now -= 1
            if paused and self._consumer is not None:
                self._consumer.resume(*self._consumer.assignment())

    async def _refresh_lag(self) -> None:
        """Lag of every assigned partition (position to high watermark), at most once a second
        once known; while a partition's high watermark is still unknown (no fetch answered yet), on
        every pass, so /ready does not wait a second longer than the first fetch."""
        now = time.monotonic()
        if self._consumer is None or now - self._last_lag_check < 1.0:
            return
        self._last_lag_check = now
        for tp in self._consumer.assignment():
            hw = self._consumer.highwater(tp)
            if hw is None:
                self._last_lag_check = 0.0
                continue
            try:
                pos = await self._consumer.position(tp)
            except (KafkaError, IllegalStateError):
                continue
            self.metrics.set_lag(tp.topic, tp.partition, max(hw - pos, 0), end=hw)

    def _at_log_end(self) -> bool:
        """Every assigned partition handed up to its high watermark (as of the last fetch answers):
        nothing more is waiting at the broker for this processor."""
        assert self._consumer is not None
        lag = self.metrics.lag
        assigned = self._consumer.assignment()
        return bool(assigned) and all(lag.get((tp.topic, tp.partition)) == 0 for tp in assigned)

    def health(self) -> dict[str, object]:
        """Liveness and readiness: ready = in the group, not retrying, caught up within the bound."""
        assigned = self.assignment()
        known = {(tp.topic, tp.partition) for tp in assigned} <= set(self.metrics.lag)
        lag = self.metrics.total_lag
        ready = self._joined and self._retrying_now == 0 and known and lag <= self._settings.ready_max_lag
        return {"worker": self._processor.name, "ready": ready, "joined": self._joined,
                "partitions": len(assigned), "lag": lag, "lag_known": known,
                "retrying": self._retrying_now > 0, "batches": self.metrics.batches,
                "log_ends_seen": self.metrics.ends_seen()}

    def _maybe_report(self) -> None:
        now = time.monotonic()
        if now - self._last_report >= self._settings.report_every_s:
            self._last_report = now
            self._log.info("runner.progress", **self.metrics.snapshot())

    # --- rebalance ---------------------------------------------------------------------------
    def _rewind(self, fetched: dict[TopicPartition, list]) -> None:
        """Drop a fetch that raced a rebalance. Partitions still ours that the processor did not
        position itself go back to the first dropped record, so nothing is skipped."""
        assert self._consumer is not None
        mine = self._consumer.assignment()
        for tp, messages in fetched.items():
            if messages and tp in mine:
                # a partition the processor positioned goes back to that position: the dropped
                # records may have been fetched after the seek (and would otherwise be skipped)
                self._consumer.seek(tp, self._sought.get(tp, messages[0].offset))
        self._log.info("runner.stale_fetch_dropped", records=sum(len(m) for m in fetched.values()))

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._lock:  # the batch in flight is committed before we let go
            self._epoch += 1
            await self._processor.revoked(set(revoked))
            await self._commit_pending()
        self.metrics.forget_partitions([(tp.topic, tp.partition) for tp in revoked])
        self._log.info("runner.revoked", partitions=sorted(f"{tp.topic}/{tp.partition}" for tp in revoked))

    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        # Holding the batch lock: no batch is handled while the processor loads its positions, and
        # a fetch made before the seeks below is recognised as stale by the epoch.
        async with self._lock:
            self._epoch += 1
            positions = await self._retrying("load stored positions",
                                             lambda: self._processor.assigned(set(assigned)))
            assert self._consumer is not None
            self._sought = {tp: o for tp, o in positions.items() if tp in assigned}
            for tp, offset in self._sought.items():
                self._consumer.seek(tp, offset)
            self._epoch += 1
        self._joined = True
        member = consumer_member(self._consumer)
        if self._member_file is not None and member is not None:
            self._member_file.save(*member)
        self._last_lag_check = 0.0
        self._log.info("runner.assigned", partitions=sorted(f"{tp.topic}/{tp.partition}" for tp in assigned),
                       seeks={f"{tp.topic}/{tp.partition}": o for tp, o in positions.items()})


class _Listener(ConsumerRebalanceListener):
    def __init__(self, runner: BatchRunner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked) -> None:  # noqa: ANN001
        await self._runner._on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned) -> None:  # noqa: ANN001
        await self._runner._on_assigned(set(assigned))
