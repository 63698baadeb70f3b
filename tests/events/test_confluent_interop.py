"""Our bytes and confluent-kafka's Avro serde understand each other.

confluent-kafka's own AvroSerializer/AvroDeserializer, with its in-memory
``mock://`` Schema Registry seeded with our schemas: ids come from that
registry (through our SchemaRegistry interface), so both sides share them.
The bytes also travel through the real broker.
"""

import asyncio

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, topic_record_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from events.errors import UnknownSchemaError
from events.publisher import OutgoingRecord
from events.serde import Serde
from tests.fixtures import example_event

pytestmark = pytest.mark.stack


class ConfluentClientRegistry:
    """Our SchemaRegistry interface over confluent-kafka's registry client."""

    def __init__(self, client: SchemaRegistryClient) -> None:
        self.client = client

    async def register(self, subject: str, schema_text: str) -> int:
        return self.client.register_schema(subject, Schema(schema_text, "AVRO"))

    async def schema_text(self, schema_id: int) -> str:
        try:
            return self.client.get_schema(schema_id).schema_str
        except Exception as e:
            raise UnknownSchemaError(schema_id) from e

    async def close(self) -> None:
        return None


@pytest.fixture
def confluent_serde(catalog, platform):
    client = SchemaRegistryClient.new_client({"url": f"mock://{platform.topics.prefix}"})
    serde = Serde(catalog, ConfluentClientRegistry(client), platform.topics)
    asyncio.run(serde.prepare())
    return client, serde


def test_our_bytes_decode_with_confluents_deserializer(confluent_serde, catalog, platform):
    client, serde = confluent_serde
    deserializer = AvroDeserializer(client)

    async def through_broker():
        await platform.ensure_topics()
        events = [example_event(catalog, name, n) for n, name in enumerate(catalog.names())]
        async with platform.publisher(serde) as pub:
            await pub.publish_many(events)
        async with platform.reader(serde, sorted({e.TOPIC_FAMILY for e in events})) as reader:
            return events, await reader.read_to_end()

    events, records = asyncio.run(through_broker())
    by_id = {e.event_id: e for e in events}
    assert len(records) == len(events)
    for r in records:
        theirs = deserializer(r.value, SerializationContext(r.topic, MessageField.VALUE))
        assert theirs == by_id[theirs["event_id"]].to_avro()


def test_confluents_serializer_bytes_decode_with_ours(confluent_serde, catalog, platform):
    client, serde = confluent_serde

    async def through_broker(records):
        await platform.ensure_topics()
        async with platform.publisher(serde) as pub:
            await pub.publish_records(records)
        async with platform.reader(serde, sorted({platform.topics.family_of(r.topic) for r in records})) as reader:
            return await reader.read_to_end()

    outgoing, expected = [], {}
    for n, name in enumerate(catalog.names()):
        event = example_event(catalog, name, n)
        sv = catalog.latest(name)
        topic = platform.topics.topic(sv.topic_family)
        serializer = AvroSerializer(client, sv.text, conf={
            "auto.register.schemas": False, "use.latest.version": True,
            "subject.name.strategy": topic_record_subject_name_strategy,
        })
        data = serializer(event.to_avro(), SerializationContext(topic, MessageField.VALUE))
        outgoing.append(OutgoingRecord(topic=topic, key=event.key().encode(), value=data))
        expected[event.event_id] = event

    records = asyncio.run(through_broker(outgoing))
    assert len(records) == len(expected)
    for r in records:
        assert r.error is None, r.error
        event = r.decoded.to_event()
        assert event == expected[event.event_id]
