"""The batch-runner processor that feeds the warehouse from every topic family.

One fetch -> one :class:`~projections.clickhouse.rows.WarehouseBatch` -> one
columnar insert per table plus the positions, off the event loop. On
assignment the runner seeks to the positions stored in the warehouse, so the
warehouse, not the consumer group, is the checkpoint.
"""

from __future__ import annotations

import asyncio
import time

import structlog
from aiokafka import TopicPartition

from events.reader import ConsumedRecord
from events.topics import FAMILIES
from projections.clickhouse.errors import WarehouseUnavailable
from projections.clickhouse.rows import batch_of
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

    def __init__(self, warehouse: ClickHouseWarehouse) -> None:
        self.warehouse = warehouse
        self.rows_written = 0

    async def start(self) -> None:
        await open_warehouse(self.warehouse)

    async def assigned(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int]:
        try:
            stored = await asyncio.to_thread(self.warehouse.positions)
        except WarehouseUnavailable as e:
            raise SinkUnavailable(str(e), dependency="clickhouse") from e
        return {tp: stored[(tp.topic, tp.partition)] for tp in partitions if (tp.topic, tp.partition) in stored}

    async def process(self, records: list[ConsumedRecord]) -> BatchResult:
        batch = batch_of(records)
        try:
            self.rows_written += await asyncio.to_thread(self.warehouse.write, batch)
        except WarehouseUnavailable as e:
            raise SinkUnavailable(str(e), dependency="clickhouse") from e
        return BatchResult()

    async def close(self) -> None:
        await asyncio.to_thread(self.warehouse.close)
