"""The projection framework: one way to turn the log into a read model.

A **projection** is a name, the topic families it reads, a handler per event
type and the tables it declares. A handler is a pure function of one decoded
record (``plain`` decode: uuids as str, timestamps as int micros) returning
:class:`Change` objects; it never does I/O. A **sink** (Postgres, Redis,
ClickHouse...) stores changes::

    sink.setup(target)                 create / migrate the target (schema, key prefix, database)
    sink.apply(changes, positions)     one batch: the changes AND the next offsets per partition,
                                       atomically (one transaction, one Lua script) or idempotently
    sink.positions()                   {(topic, partition): next offset} for resume
    sink.snapshot()                    {table: {key: row}}: the read model, for tests and rebuild checks
    sink.promote()                     blue/green: this target becomes the live one atomically
    sink.close()

:class:`ProjectionProcessor` runs a projection into a sink on the batch runner
(``streams.runner``): on assignment it seeks to the sink's stored positions
(the sink, not the consumer group, is the checkpoint); per fetch it calls the
handlers, then ``apply`` once; a sink that cannot be reached raises
``streams.errors.SinkUnavailable`` and the runner retries the same batch with
backoff. Events of types without a handler are skipped (their offsets still
advance).

Change semantics every sink implements (checked by the contract tests in
``tests/projections/contract.py``):

* ``upsert``: the row ``(table, key)`` takes the fields in ``set`` and the map
  patches in ``patch`` **only if** ``version`` is greater than the row's stored
  version (``aggregate_version``, or an event time in micros); otherwise the
  change is ignored. Fields not named keep their value. So a redelivered or
  older event never overwrites a newer state.
* ``insert``: the row is written once; a second insert of the same key is
  ignored (history rows keyed by event id).

Adding a sink: subclass :class:`Sink`, add it to the ``sink`` fixture of the
contract tests and to the crash-test harness (``tests/projections/harness.py``).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import structlog
from aiokafka import TopicPartition

from events.reader import ConsumedRecord
from streams.errors import SinkUnavailable
from streams.processor import BatchResult, Processor

log = structlog.get_logger(__name__)

ColumnType = Literal["text", "bigint", "double", "bool", "timestamptz", "jsonb"]
Key = tuple[str, ...]
Positions = dict[tuple[str, int], int]


@dataclass(frozen=True, slots=True)
class MapPatch:
    """Set some entries of a map-valued field and remove others."""

    set: Mapping[str, Any] = field(default_factory=dict)
    remove: tuple[str, ...] = ()

    def apply(self, current: Mapping[str, Any] | None) -> dict[str, Any]:
        out = dict(current or {})
        out.update(self.set)
        for k in self.remove:
            out.pop(k, None)
        return out


@dataclass(frozen=True, slots=True)
class Change:
    table: str
    key: Key
    version: int
    set: Mapping[str, Any] = field(default_factory=dict)
    patch: Mapping[str, MapPatch] = field(default_factory=dict)
    op: Literal["upsert", "insert"] = "upsert"


@dataclass(frozen=True, slots=True)
class Table:
    """A read-model table: key columns, value columns with types, and whether rows are versioned."""

    name: str
    key: tuple[str, ...]
    columns: Mapping[str, ColumnType]
    mode: Literal["upsert", "insert"] = "upsert"
    doc: str = ""


Handler = Callable[[dict[str, Any]], Iterable[Change]]


@dataclass(frozen=True)
class Projection:
    name: str
    families: tuple[str, ...]
    tables: tuple[Table, ...]
    handlers: Mapping[str, Handler]
    #: sink kind -> [(version, SQL or script)] applied after the tables (views, indexes).
    extra_migrations: Mapping[str, tuple[tuple[int, str], ...]] = field(default_factory=dict)

    def table(self, name: str) -> Table:
        return next(t for t in self.tables if t.name == name)

    def changes(self, records: Iterable[ConsumedRecord]) -> list[Change]:
        out: list[Change] = []
        handlers = self.handlers
        for r in records:
            d = r.decoded
            if d is None:
                continue
            h = handlers.get(d.event_type)
            if h is not None:
                out.extend(h(d.record))
        return out


def fold(row: dict[str, Any] | None, row_version: int | None, changes: Iterable[Change]) -> tuple[dict[str, Any], int] | None:
    """Apply a key's upserts in order to its stored row; None if none of them is newer."""
    current = dict(row or {})
    version = -1 if row_version is None else row_version
    touched = False
    for c in changes:
        if c.version <= version:
            continue
        current.update(c.set)
        for f, p in c.patch.items():
            current[f] = p.apply(current.get(f))
        version = c.version
        touched = True
    return (current, version) if touched else None


def compact(changes: list[Change]) -> list[Change]:
    """Drop upserts whose effect a later change of the same key always overwrites: a later upsert
    with a greater version that sets every field the earlier one sets, and the earlier one has no
    map patches. Exact under the upsert rule (if the earlier applies, the later applies after it);
    readings and scores, which set whole rows, shrink to one change per sensor and batch."""
    last: dict[tuple[str, Key], Change] = {}
    keep = [True] * len(changes)
    for i in range(len(changes) - 1, -1, -1):
        c = changes[i]
        if c.op != "upsert":
            continue
        k = (c.table, c.key)
        later = last.get(k)
        if (later is not None and not c.patch and later.version > c.version
                and later.set.keys() >= c.set.keys()):
            keep[i] = False
            continue
        last[k] = c
    return [c for c, k in zip(changes, keep) if k]


def next_positions(records: Iterable[ConsumedRecord]) -> Positions:
    out: Positions = {}
    for r in records:
        tp = (r.topic, r.partition)
        if r.offset + 1 > out.get(tp, -1):
            out[tp] = r.offset + 1
    return out


class Sink:
    """What a read-model store implements (see the module docstring)."""

    kind: ClassVar[str] = "sink"

    def __init__(self, projection: Projection, target: str) -> None:
        self.projection = projection
        self.target = target

    async def setup(self) -> None:
        """Connect, create/migrate the target."""
        raise NotImplementedError

    async def apply(self, changes: list[Change], positions: Positions) -> None:
        raise NotImplementedError

    async def positions(self) -> Positions:
        raise NotImplementedError

    async def snapshot(self) -> dict[str, dict[Key, dict[str, Any]]]:
        raise NotImplementedError

    async def drop(self) -> None:
        """Remove the target entirely."""
        raise NotImplementedError

    async def promote(self) -> Sink | None:
        """Make this (rebuilt) target the live one atomically; return a sink on the previous live
        target (to be dropped by the caller) or None."""
        raise NotImplementedError

    async def close(self) -> None:
        pass


class ProjectionProcessor(Processor):
    """Runs a projection into a sink on the batch runner.

    ``pipelined`` (default): a batch's ``apply`` runs while the runner fetches and decodes the
    next fetch; at most one apply is in flight (``process`` waits for it before starting the
    next), so memory stays bounded. The sink's positions are the checkpoint, so the consumer
    group's offsets running one batch ahead are harmless: after a crash the sink's positions
    bring the unapplied batch back. An apply that fails with ``SinkUnavailable`` is retried in
    place with backoff (logged) until it succeeds; ``revoked``/``close`` wait for it.
    """

    decode = "plain"
    #: the sink's positions are the checkpoint: the group's offsets are committed in the background
    commit_every_s = 1.0

    def __init__(self, projection: Projection, sink: Sink, *, name: str | None = None, pipelined: bool = True,
                 retry_initial_s: float = 0.2, retry_max_s: float = 5.0) -> None:
        self.projection = projection
        self.sink = sink
        self.name = name or f"project-{projection.name}-{sink.kind}"  # type: ignore[misc]
        self.families = projection.families  # type: ignore[misc]
        self.pipelined = pipelined
        self.retry_initial_s, self.retry_max_s = retry_initial_s, retry_max_s
        self.applied_events = 0
        self._pending: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.sink.setup()

    async def assigned(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int]:
        await self.drain()
        stored = await self.sink.positions()
        return {tp: stored.get((tp.topic, tp.partition), 0) for tp in partitions}

    async def process(self, records: list[ConsumedRecord]) -> BatchResult:
        changes = self.projection.changes(records)  # a handler error surfaces here, to the runner
        positions = next_positions(records)
        if not self.pipelined:
            await self.sink.apply(changes, positions)
            self.applied_events += len(records)
            return BatchResult()
        await self.drain()
        self._pending = asyncio.create_task(self._apply(changes, positions, len(records)))
        return BatchResult()

    async def _apply(self, changes: list[Change], positions: Positions, n: int) -> None:
        delay, failed_at = self.retry_initial_s, None
        while True:
            try:
                await self.sink.apply(changes, positions)
                break
            except SinkUnavailable as e:
                if failed_at is None:
                    failed_at = time.monotonic()
                log.warning("projection.retrying", projection=self.projection.name, sink=self.sink.kind,
                            error=str(e), backoff_s=round(delay, 2))
                await asyncio.sleep(delay * (0.5 + random.random() / 2))
                delay = min(delay * 2, self.retry_max_s)
        if failed_at is not None:
            log.info("projection.recovered", projection=self.projection.name, sink=self.sink.kind,
                     outage_s=round(time.monotonic() - failed_at, 1))
        self.applied_events += n

    async def drain(self) -> None:
        """Wait for the apply in flight (it retries until the sink takes it)."""
        if self._pending is not None:
            task, self._pending = self._pending, None
            await task

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        await self.drain()

    async def close(self) -> None:
        try:
            await self.drain()
        finally:
            await self.sink.close()
