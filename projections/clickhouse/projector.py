"""The batch-runner processor that feeds the warehouse from every topic family.

Fetches are turned into rows and buffered until ``batch_rows`` events, or
``batch_max_delay_ms`` after the buffer's first fetch (a timer set for exactly
then), or the runner reports it handed everything the broker has
(``caught_up``: more rows are not coming soon, waiting only adds lag); ClickHouse
inserts are several times cheaper per row in large blocks, which a projector
behind the log still gets. Then one columnar insert per table plus the
positions runs in a worker thread (docs/decisions/0055). A buffer that becomes
due while a write is in flight keeps filling and is started by that write's
completion; only a full buffer makes ``process`` wait (docs/decisions/0057).

The warehouse, not the consumer group, is the checkpoint: on assignment the
runner seeks to the positions stored with the rows (partitions never written
start from the beginning). That lets the insert of batch *n* run while the
runner fetches and decodes the next ones (at most one write in flight plus one
buffer, so memory stays bounded): the group's committed offsets may run ahead
of the rows, and after a crash the stored positions bring those events back. A failed write is retried before the next batch is taken
(docs/decisions/0062-warehouse-pipelined-writes.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog
from aiokafka import TopicPartition

from events.reader import ConsumedRecord
from events.topics import FAMILIES
from projections.clickhouse.errors import WarehouseError, WarehouseUnavailable
from projections.clickhouse.rows import WarehouseBatch, batch_of
from projections.clickhouse.warehouse import ClickHouseWarehouse
from streams.errors import SinkUnavailable
from streams.processor import BatchResult, Processor

log = structlog.get_logger(__name__)


async def open_warehouse(warehouse: ClickHouseWarehouse, *, timeout_s: float = 60.0) -> None:
    """Open and migrate, retrying with backoff while the engine is unavailable (a server starting,
    or a chDB directory briefly held by a `qi sql` that opened it directly)."""
    deadline = time.monotonic() + timeout_s
    delay = 0.1
    while True:
        try:
            await asyncio.to_thread(warehouse.start)
            return
        except WarehouseUnavailable as e:
            if time.monotonic() + delay > deadline:
                raise SinkUnavailable(str(e), dependency="clickhouse") from e
            log.warning("warehouse.unavailable", error=str(e), backoff_s=round(delay, 2))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


class ClickHouseProjector(Processor):
    name = "project-clickhouse"
    families = tuple(FAMILIES)
    decode = "plain"
    #: the warehouse's positions are the checkpoint: the group's offsets are committed in the background
    commit_every_s = 1.0

    def __init__(self, warehouse: ClickHouseWarehouse, *, batch_rows: int = 20_000,
                 batch_max_delay_ms: int = 200) -> None:
        self.warehouse = warehouse
        self.batch_rows = batch_rows
        self.max_delay_s = batch_max_delay_ms / 1000
        self.rows_written = 0
        self._pending: tuple[WarehouseBatch, asyncio.Task[int]] | None = None
        self._buffer: WarehouseBatch | None = None
        self._buffered_at = 0.0
        self._lock = asyncio.Lock()
        self._due: asyncio.TimerHandle | None = None  # fires when the buffer's oldest event is due
        self._caught_up = False  # the runner reached the log end since the buffer started: write it
        self._flushes: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await open_warehouse(self.warehouse)

    def _arm(self, delay_s: float | None = None) -> None:
        """A buffer just started: write it exactly ``batch_max_delay_ms`` later even when no new
        fetch comes (unless a fetch fills it first, or the runner catches up)."""
        self._disarm()
        delay = self.max_delay_s if delay_s is None else delay_s
        self._due = asyncio.get_running_loop().call_later(delay, self._flush_soon, self._buffer)

    def _disarm(self) -> None:
        if self._due is not None:
            self._due.cancel()
            self._due = None

    def _flush_soon(self, buffer: WarehouseBatch | None = None) -> None:
        """Write the buffer in the background (``buffer``: only if it is still that one)."""
        task = asyncio.create_task(self._flush(buffer))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(self, buffer: WarehouseBatch | None) -> None:
        try:
            async with self._lock:
                if self._buffer is None or (buffer is not None and self._buffer is not buffer):
                    return
                if self._pending is not None and not self._pending[1].done():
                    return  # the write in flight starts this buffer when it is done (_written)
                await self._submit()
        except SinkUnavailable:
            # logged; process() or drain() raises it to the runner, which backs off; without
            # another fetch, this timer tries again
            if self._buffer is not None and self._due is None:
                self._arm(max(self.max_delay_s, 0.1))

    async def assigned(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int]:
        await self.drain()
        try:
            stored = await asyncio.to_thread(self.warehouse.positions)
        except WarehouseUnavailable as e:
            raise SinkUnavailable(str(e), dependency="clickhouse") from e
        return {tp: stored.get((tp.topic, tp.partition), 0) for tp in partitions}

    def _is_due(self, now: float) -> bool:
        b = self._buffer
        return b is not None and (self._caught_up or b.events >= self.batch_rows
                                  or now - self._buffered_at >= self.max_delay_s)

    async def process(self, records: list[ConsumedRecord]) -> BatchResult:
        batch = batch_of(records)  # a record that cannot become rows fails here, in the runner's hands
        async with self._lock:
            if self._pending is not None and self._pending[1].done():
                await self._wait_pending()  # a failed write raises before the buffer changes: a retried fetch is not added twice
            buffered = self._buffer.events if self._buffer is not None else 0
            if buffered + batch.events >= self.batch_rows:
                await self._wait_pending()  # a full buffer waits for the write in flight (memory: one buffer + one write)
            now = time.monotonic()
            if self._buffer is None:
                self._buffer, self._buffered_at = batch, now
                self._arm()
            else:
                self._buffer.merge(batch)
            if self._is_due(now) and self._pending is None:
                await self._submit()
            # due while a write is in flight: the buffer keeps filling, and that write starts it when
            # it is done (_written); the runner's next fetch and decode go on meanwhile (0057)
        return BatchResult()

    async def caught_up(self) -> None:
        """The runner handed everything the broker has: waiting longer would only add lag (more
        rows are not coming within the delay), so write the buffer as soon as the write in flight
        is done. While the runner is behind, buffers still fill to ``batch_rows`` / the delay;
        when live, the insert rate is bounded by one write in flight (0055)."""
        if self._buffer is not None:
            self._disarm()
            self._caught_up = True
            self._flush_soon(self._buffer)

    async def _submit(self) -> None:
        """Wait for the write in flight, then start writing the buffer."""
        await self._wait_pending()
        if self._buffer is not None:
            batch, self._buffer = self._buffer, None
            self._disarm()
            self._caught_up = False
            self._start_write(batch)

    def _start_write(self, batch: WarehouseBatch) -> None:
        task = asyncio.create_task(asyncio.to_thread(self.warehouse.write, batch))
        task.add_done_callback(self._written)
        self._pending = (batch, task)

    def _written(self, task: asyncio.Task[int]) -> None:
        """A write finished: start the buffer now if it became due meanwhile (size, delay, caught up).
        A failed write is left to the next ``process``/``drain``, which retry it under the runner's
        backoff (no retry loop from here)."""
        if task.cancelled() or task.exception() is not None:
            return
        if self._is_due(time.monotonic()):
            self._flush_soon(self._buffer)

    async def drain(self) -> None:
        """Write the buffer and wait for it (RetriableError if the warehouse fails)."""
        async with self._lock:
            await self._submit()
            await self._wait_pending()

    async def _wait_pending(self) -> None:
        """Wait for the write in flight; if it failed, write that batch again (RetriableError on failure)."""
        if self._pending is None:
            return
        batch, task = self._pending
        try:
            try:
                self.rows_written += await asyncio.shield(task)  # a cancelled waiter leaves the write be
            except WarehouseError as first:
                log.warning("warehouse.write_failed", error=str(first), retriable=first.retriable)
                self.rows_written += await asyncio.to_thread(self.warehouse.write, batch)
        except WarehouseError as e:
            # Keep the batch: its offsets may already be committed, the stored positions are not.
            self._start_write(batch)
            raise SinkUnavailable(f"warehouse write failed: {e}", dependency="clickhouse") from e
        self._pending = None

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        await self.drain()

    async def close(self) -> None:
        self._disarm()
        for task in list(self._flushes):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            await self.drain()
        finally:
            await asyncio.to_thread(self.warehouse.close)
