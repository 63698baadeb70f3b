"""Dead letters: what a worker could not process, with the reason. Nothing is dropped silently."""

from __future__ import annotations

from datetime import UTC, datetime

from events.errors import PoisonKind
from events.publisher import OutgoingRecord
from events.reader import ConsumedRecord
from events.serde import Serde
from events.topics import TopicNames
from streams.ids import derived_id

_MAX_MESSAGE = 2000


def dead_letter_record(
    serde: Serde, topics: TopicNames, record: ConsumedRecord, kind: PoisonKind, message: str, worker: str
) -> OutgoingRecord:
    """The DeadLetter event for one consumed record, keyed by the record's own key.

    Its event_id derives from (worker, topic, partition, offset): processing the same
    record again yields the same dead letter.
    """
    event_id = derived_id("deadletter", worker, record.topic, record.partition, record.offset)
    occurred = datetime.fromtimestamp(max(record.timestamp_ms, 0) / 1000, UTC)
    value = serde.encode("DeadLetter", {
        "event_id": event_id,
        "event_type": "DeadLetter",
        "occurred_at": occurred,
        "recorded_at": datetime.now(UTC),
        "source": worker,
        "correlation_id": None,
        "causation_id": None,
        "source_topic": record.topic,
        "source_partition": record.partition,
        "source_offset": record.offset,
        "source_key": record.key,
        "original": record.value,
        "error_kind": kind,
        "error_message": message[:_MAX_MESSAGE],
        "worker": worker,
    })
    return OutgoingRecord(topic=topics.topic("deadletter"), key=record.key, value=value, event_id=str(event_id))
