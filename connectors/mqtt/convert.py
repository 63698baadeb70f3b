"""One MQTT message into encoded records: readings, or one dead letter with the reason.

Event ids are deterministic: uuid5 over the MQTT topic, the payload bytes and
the measurement's index in the payload. A redelivered message (QoS 1
duplicate, or redelivery after a crash) yields the same ids, so sinks
deduplicate it. The payload's own gateway id and timestamp are part of the
payload, hence of the identity; two byte-identical payloads on one topic are
indistinguishable from a redelivery (docs/bridge.md).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from connectors.mqtt.errors import ConversionError, Reason
from connectors.mqtt.mapping import Mapping, MappingFile
from connectors.mqtt.payload import json_readings, senml_readings
from events.publisher import OutgoingRecord
from events.serde import Serde
from events.topics import TopicNames
from streams.ids import derived_id

WORKER = "bridge-mqtt"


class Converter:
    """Turns (topic, payload) into OutgoingRecords. Pure apart from the clock; no I/O."""

    def __init__(self, config: MappingFile, serde: Serde, topics: TopicNames) -> None:
        self._config = config
        self._serde = serde
        self._topics = topics
        self._deadletter_topic = topics.topic("deadletter")
        self._compiled = [(m, m.topic_filter, topics.resolve(m.kafka_topic)) for m in config.mapping]

    @property
    def subscriptions(self) -> list[str]:
        """The MQTT filters to subscribe to (duplicates removed, order kept)."""
        return list(dict.fromkeys(f.subscription for _, f, _ in self._compiled))

    @property
    def kafka_topics(self) -> list[str]:
        """Every Kafka topic this converter produces to (dead letters included)."""
        return list(dict.fromkeys([*(t for _, _, t in self._compiled), self._deadletter_topic]))

    def convert(self, topic: str, payload: bytes, now: datetime | None = None) -> list[OutgoingRecord]:
        """The records for one message; raises :class:`ConversionError` for a dead letter."""
        return self.convert_timed(topic, payload, now)[0]

    def convert_timed(self, topic: str, payload: bytes,
                      now: datetime | None = None) -> tuple[list[OutgoingRecord], float | None]:
        """The records and the gateway's own time of the message (epoch seconds, the earliest
        measurement time the payload carried; None when it carried none)."""
        now = now or datetime.now(UTC)
        if len(payload) > self._config.bridge.max_payload_bytes:
            raise ConversionError(Reason.OVERSIZED, f"{len(payload)} bytes, more than "
                                  f"max_payload_bytes={self._config.bridge.max_payload_bytes}")
        for mapping, flt, kafka_topic in self._compiled:
            captured = flt.match(topic)
            if captured is not None:
                return self._records(mapping, kafka_topic, captured, topic, payload, now)
        raise ConversionError(Reason.UNMAPPED_TOPIC, f"no mapping matches topic {topic!r}")

    def _records(self, mapping: Mapping, kafka_topic: str, captured: dict[str, str], topic: str,
                 payload: bytes, now: datetime) -> tuple[list[OutgoingRecord], float | None]:
        if mapping.format == "senml":
            readings = senml_readings(payload, mapping, now)
        else:
            readings = json_readings(payload, mapping)
        digest = hashlib.sha256(payload).hexdigest()
        out = []
        stamped = [r["occurred_at"] for r in readings if "occurred_at" in r]
        source_time = min(stamped).timestamp() if stamped else None
        for i, r in enumerate(readings):
            fields = {**mapping.defaults, **captured, **r}
            for f in ("twin_id", "sensor_id", "quantity", "value", "unit"):
                if f not in fields:
                    raise ConversionError(Reason.MISSING_FIELD, f"no {f} for measurement {i}")
            event_id = derived_id("mqtt", topic, digest, i)
            record = {
                "event_id": event_id,
                "event_type": "SensorReading",
                "occurred_at": fields.get("occurred_at", now),
                "recorded_at": now,
                "source": fields.get("source", self._config.bridge.source),
                "correlation_id": None,
                "causation_id": None,
                "twin_id": fields["twin_id"],
                "sensor_id": fields["sensor_id"],
                "quantity": fields["quantity"],
                "value": fields["value"],
                "unit": fields["unit"],
            }
            key = "/".join(str(fields.get(k, "")) for k in mapping.key)
            out.append(OutgoingRecord(kafka_topic, key.encode(), self._serde.encode("SensorReading", record),
                                      str(event_id)))
        return out, source_time

    def dead_letter(self, topic: str, payload: bytes, error: ConversionError,
                    now: datetime | None = None) -> OutgoingRecord:
        """The DeadLetter for a message: its MQTT topic, raw payload and reason.

        ``source_partition``/``source_offset`` are -1 (MQTT has neither); the id derives from
        the topic and payload, so a redelivered bad message gives the same dead letter.
        """
        now = now or datetime.now(UTC)
        event_id = derived_id("deadletter", WORKER, topic, hashlib.sha256(payload).hexdigest())
        message = str(error)
        limit = self._config.bridge.max_payload_bytes
        if len(payload) > limit:  # keep the dead letter producible: the first max_payload_bytes bytes
            message += f" (original truncated to its first {limit} bytes)"
            payload = payload[:limit]
        value = self._serde.encode("DeadLetter", {
            "event_id": event_id,
            "event_type": "DeadLetter",
            "occurred_at": now,
            "recorded_at": now,
            "source": self._config.bridge.source,
            "correlation_id": None,
            "causation_id": None,
            "source_topic": topic,
            "source_partition": -1,
            "source_offset": -1,
            "source_key": topic.encode(),
            "original": payload,
            "error_kind": error.reason.kind,
            "error_message": message[:2000],
            "worker": WORKER,
        })
        return OutgoingRecord(self._deadletter_topic, topic.encode(), value, str(event_id))
