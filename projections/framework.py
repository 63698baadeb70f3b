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

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import structlog
from aiokafka import TopicPartition

from events.reader import ConsumedRecord
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
    """Runs a projection into a sink on the batch runner."""

    decode = "plain"

    def __init__(self, projection: Projection, sink: Sink, *, name: str | None = None) -> None:
        self.projection = projection
        self.sink = sink
        self.name = name or f"project-{projection.name}-{sink.kind}"  # type: ignore[misc]
        self.families = projection.families  # type: ignore[misc]
        self.applied_events = 0

    async def start(self) -> None:
        await self.sink.setup()

    async def assigned(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int]:
        stored = await self.sink.positions()
        return {tp: stored.get((tp.topic, tp.partition), 0) for tp in partitions}

    async def process(self, records: list[ConsumedRecord]) -> BatchResult:
        changes = self.projection.changes(records)
        await self.sink.apply(changes, next_positions(records))
        self.applied_events += len(records)
        return BatchResult()

    async def close(self) -> None:
        await self.sink.close()
