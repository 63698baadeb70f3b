"""What a batch-runner worker implements: a :class:`Processor`.

The runner hands a processor whole fetches. A processor returns the records
to publish and the records it judges poison; it never talks to Kafka itself.
See :mod:`streams.runner` for the order of operations per batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from events.errors import PoisonKind
from events.publisher import OutgoingRecord
from events.reader import ConsumedRecord

DecodeMode = Literal["logical", "plain", "envelope"]


@dataclass(frozen=True, slots=True)
class Poison:
    """An input the processor cannot use; it goes to the dead-letter topic with this reason."""

    record: ConsumedRecord
    kind: PoisonKind
    message: str


@dataclass(slots=True)
class BatchResult:
    outputs: list[OutgoingRecord] = field(default_factory=list)
    poison: list[Poison] = field(default_factory=list)


class Processor:
    """Base class with no-op hooks. Subclasses set ``name``/``families`` and implement ``process``."""

    #: Consumer group suffix and the ``worker`` of its dead letters.
    name: ClassVar[str] = "processor"
    #: Topic families read (``readings``, ``twins``...).
    families: ClassVar[tuple[str, ...]] = ()
    #: "logical": uuid/datetime objects; "plain": uuids as str, timestamps as int micros (faster);
    #: "envelope": only event type and ``{"event_id"}``, body not decoded (``Serde.decode_envelope``).
    decode: ClassVar[DecodeMode] = "logical"
    #: Most records per batch for this processor; None: ``RunnerSettings.max_batch``.
    max_batch: int | None = None
    #: None: the consumer group's offsets are the checkpoint, committed (and awaited) after every
    #: batch. A number of seconds: the processor's sink stores its own positions and seeks there at
    #: assignment, so the group's offsets are only informational; the runner commits them in the
    #: background at most this often and a batch never waits for it (docs/decisions/0066).
    commit_every_s: float | None = None

    async def start(self) -> None:
        """Open connections. Called once before the consumer joins the group."""

    async def assigned(self, partitions: set[TopicPartition]) -> dict[TopicPartition, int]:
        """Partitions just assigned; return positions to seek to ({}: the group's committed offsets)."""
        return {}

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        """Partitions taken away, after their last batch was published, flushed and committed."""

    def registries(self) -> list[CollectorRegistry]:
        """Prometheus registries of the processor's own metrics, served on /metrics beside the runner's."""
        return []

    async def process(self, records: list[ConsumedRecord]) -> BatchResult:
        """One fetch of decodable records, in offset order per partition."""
        raise NotImplementedError

    async def caught_up(self) -> None:
        """The batch just handled (and committed, or queued for commit) brought every assigned
        partition to its high watermark: nothing more is waiting at the broker. A processor that
        buffers fetches into larger writes writes now instead of waiting for more (the warehouse
        projector, docs/decisions/0055). Never called while a batch is being handled."""

    async def flush(self) -> None:
        """After the batch's outputs are acknowledged, before its input offsets are committed."""

    async def close(self) -> None:
        """Release what ``start`` opened."""
